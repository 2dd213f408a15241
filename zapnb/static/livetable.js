// zapnb LiveTable: the browser side of zapnb.LiveTable (an anywidget ES module, no build step, no imports).
//
// The rows stay in the kernel. This view asks for the window of rows it needs ({type: "window"} messages),
// receives each window as Arrow IPC stream bytes in a binary buffer (decoded by decodeArrowStream below),
// and renders only the visible rows plus a little overscan above a spacer as tall as every row. The kernel
// pushes {type: "update"} notices when the result changes; the view then refetches what it shows, keeping
// its scroll position, sort and selection, and marks the changed rows for a moment.
// The protocol and the design are described in docs/live-tables.md.

const ROW_HEIGHT = 24; // px, the height of tr.zapnb-row in livetable.css
const VIEW_HEIGHT = 420; // px, the most the table grows to before it scrolls
const PAGE_ROWS = 100; // rows per cached page; requests cover whole pages
const MAX_REQUEST_PAGES = 10; // the kernel answers at most 1,000 rows per request
const OVERSCAN = 8; // rows rendered beyond each edge of the viewport
const MAX_PAGES = 12; // pages cached for the current version and sort
const MAX_SCROLL = 16_000_000; // px; taller tables scroll proportionally (see maxScrollHeight)
const HIGHLIGHT_MS = 2000; // how long a changed row keeps the zapnb-changed class
const FETCH_DELAY_MS = 30; // scrolling waits this long for the scroll to settle before asking
const REQUEST_TIMEOUT_MS = 15000; // a request unanswered this long no longer blocks new ones
const MIN_WIDTH = 56; // px, column widths
const MAX_WIDTH = 360;

// --- Arrow IPC stream decoding --------------------------------------------------------------------------
// Exactly the types the kernel sends: Null, Bool, Int (8-64 bit, signed or not), FloatingPoint, Utf8 and
// LargeUtf8 (plus Binary and LargeBinary as byte arrays). Little-endian, uncompressed, no dictionaries.

const TYPE = { Null: 1, Int: 2, FloatingPoint: 3, Binary: 4, Utf8: 5, Bool: 6, LargeBinary: 19, LargeUtf8: 20 };
const HEADER = { Schema: 1, DictionaryBatch: 2, RecordBatch: 3 };
const utf8 = new TextDecoder("utf-8");

function bytesOf(buffer) {
  if (buffer instanceof Uint8Array) return buffer;
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  if (ArrayBuffer.isView(buffer)) return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  throw new Error("zapnb: expected binary data");
}

// A flatbuffer table: its DataView, its position and its vtable.
function fbTable(view, pos) {
  const vtable = pos - view.getInt32(pos, true);
  return { view, pos, vtable, vtableSize: view.getUint16(vtable, true) };
}
function fbField(table, index) {
  const at = 4 + 2 * index;
  return at < table.vtableSize ? table.view.getUint16(table.vtable + at, true) : 0;
}
function fbUint8(table, index, fallback = 0) {
  const offset = fbField(table, index);
  return offset ? table.view.getUint8(table.pos + offset) : fallback;
}
function fbInt16(table, index, fallback = 0) {
  const offset = fbField(table, index);
  return offset ? table.view.getInt16(table.pos + offset, true) : fallback;
}
function fbInt32(table, index, fallback = 0) {
  const offset = fbField(table, index);
  return offset ? table.view.getInt32(table.pos + offset, true) : fallback;
}
function fbInt64(table, index, fallback = 0) {
  const offset = fbField(table, index);
  return offset ? Number(table.view.getBigInt64(table.pos + offset, true)) : fallback;
}
function fbTarget(table, index) {
  const offset = fbField(table, index);
  if (!offset) return null;
  const at = table.pos + offset;
  return at + table.view.getUint32(at, true);
}
function fbChild(table, index) {
  const pos = fbTarget(table, index);
  return pos === null ? null : fbTable(table.view, pos);
}
function fbVector(table, index) {
  const pos = fbTarget(table, index);
  return pos === null ? { start: 0, length: 0 } : { start: pos + 4, length: table.view.getUint32(pos, true) };
}
function fbString(table, index) {
  const pos = fbTarget(table, index);
  if (pos === null) return null;
  const { view } = table;
  return utf8.decode(new Uint8Array(view.buffer, view.byteOffset + pos + 4, view.getUint32(pos, true)));
}
function fbTables(table, index) {
  const { start, length } = fbVector(table, index);
  const tables = [];
  for (let i = 0; i < length; i++) {
    const at = start + 4 * i;
    tables.push(fbTable(table.view, at + table.view.getUint32(at, true)));
  }
  return tables;
}

function readField(field) {
  if (fbChild(field, 4)) throw new Error("zapnb: dictionary-encoded Arrow columns are not supported");
  const typeId = fbUint8(field, 2);
  const type = fbChild(field, 3);
  const result = { name: fbString(field, 0) ?? "", typeId, nullable: fbUint8(field, 1) !== 0 };
  if (typeId === TYPE.Int) {
    result.bitWidth = fbInt32(type, 0);
    result.signed = fbUint8(type, 1) !== 0;
  } else if (typeId === TYPE.FloatingPoint) {
    result.precision = fbInt16(type, 0); // 0 half, 1 single, 2 double
  } else if (!Object.values(TYPE).includes(typeId)) {
    throw new Error(`zapnb: Arrow type ${typeId} of column ${result.name} is not supported`);
  }
  return result;
}

function half(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

function readColumn(field, node, nextBuffer) {
  const { length, nullCount } = node;
  if (field.typeId === TYPE.Null) return new Array(length).fill(null);
  const validity = nextBuffer();
  const valid = (i) => nullCount === 0 || validity.byteLength === 0 || (validity.getUint8(i >> 3) >> (i & 7)) & 1;
  const values = new Array(length);
  const data = nextBuffer();
  if (field.typeId === TYPE.Bool) {
    for (let i = 0; i < length; i++) values[i] = valid(i) ? ((data.getUint8(i >> 3) >> (i & 7)) & 1) === 1 : null;
  } else if (field.typeId === TYPE.Int) {
    const size = field.bitWidth / 8;
    const read = {
      "1true": (at) => data.getInt8(at),
      "1false": (at) => data.getUint8(at),
      "2true": (at) => data.getInt16(at, true),
      "2false": (at) => data.getUint16(at, true),
      "4true": (at) => data.getInt32(at, true),
      "4false": (at) => data.getUint32(at, true),
      "8true": (at) => data.getBigInt64(at, true),
      "8false": (at) => data.getBigUint64(at, true),
    }[`${size}${field.signed}`];
    for (let i = 0; i < length; i++) values[i] = valid(i) ? read(i * size) : null;
  } else if (field.typeId === TYPE.FloatingPoint) {
    const size = [2, 4, 8][field.precision];
    const read = [(at) => half(data.getUint16(at, true)), (at) => data.getFloat32(at, true), (at) => data.getFloat64(at, true)][field.precision];
    for (let i = 0; i < length; i++) values[i] = valid(i) ? read(i * size) : null;
  } else {
    // Utf8, Binary (32-bit offsets) and their Large variants (64-bit offsets): data is the offsets buffer
    const large = field.typeId === TYPE.LargeUtf8 || field.typeId === TYPE.LargeBinary;
    const text = field.typeId === TYPE.Utf8 || field.typeId === TYPE.LargeUtf8;
    const bytes = nextBuffer();
    const offset = large ? (i) => Number(data.getBigInt64(8 * i, true)) : (i) => data.getInt32(4 * i, true);
    for (let i = 0; i < length; i++) {
      if (!valid(i)) {
        values[i] = null;
        continue;
      }
      const start = offset(i);
      const slice = new Uint8Array(bytes.buffer, bytes.byteOffset + start, offset(i + 1) - start);
      values[i] = text ? utf8.decode(slice) : slice.slice();
    }
  }
  return values;
}

function readBatch(batch, body, fields, columns) {
  if (fbChild(batch, 3)) throw new Error("zapnb: compressed Arrow batches are not supported");
  const meta = batch.view;
  const nodes = fbVector(batch, 1);
  const buffers = fbVector(batch, 2);
  let nodeIndex = 0;
  let bufferIndex = 0;
  const nextNode = () => {
    const at = nodes.start + 16 * nodeIndex++;
    return { length: Number(meta.getBigInt64(at, true)), nullCount: Number(meta.getBigInt64(at + 8, true)) };
  };
  const nextBuffer = () => {
    const at = buffers.start + 16 * bufferIndex++;
    const offset = Number(meta.getBigInt64(at, true));
    const length = Number(meta.getBigInt64(at + 8, true));
    return new DataView(body.buffer, body.byteOffset + offset, length);
  };
  fields.forEach((field, i) => {
    for (const value of readColumn(field, nextNode(), nextBuffer)) columns[i].push(value);
  });
  return fbInt64(batch, 0);
}

// Decode an Arrow IPC stream: {fields: [{name, typeId, bitWidth?, signed?, precision?}], length, columns}.
// Integers of 64 bits decode as BigInt, strings as strings, nulls as null.
export function decodeArrowStream(buffer) {
  const bytes = bytesOf(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  let fields = null;
  let columns = [];
  let length = 0;
  while (pos + 4 <= bytes.byteLength) {
    let metaLength = view.getInt32(pos, true);
    pos += 4;
    if (metaLength === -1) {
      // continuation marker, then the length
      metaLength = pos + 4 <= bytes.byteLength ? view.getInt32(pos, true) : 0;
      pos += 4;
    }
    if (metaLength === 0) break; // end of stream
    const meta = new DataView(bytes.buffer, bytes.byteOffset + pos, metaLength);
    const message = fbTable(meta, meta.getUint32(0, true));
    pos += metaLength;
    const bodyLength = fbInt64(message, 3);
    const body = new DataView(bytes.buffer, bytes.byteOffset + pos, bodyLength);
    pos += bodyLength;
    const headerType = fbUint8(message, 1);
    if (headerType === HEADER.Schema) {
      fields = fbTables(fbChild(message, 2), 1).map(readField);
      columns = fields.map(() => []);
    } else if (headerType === HEADER.RecordBatch) {
      if (!fields) throw new Error("zapnb: Arrow record batch before its schema");
      length += readBatch(fbChild(message, 2), body, fields, columns);
    } else if (headerType === HEADER.DictionaryBatch) {
      throw new Error("zapnb: dictionary-encoded Arrow columns are not supported");
    }
  }
  if (!fields) throw new Error("zapnb: an Arrow stream without a schema");
  return { fields, length, columns };
}

// --- formatting: the same text as zapnb.tableview.cell_text ---------------------------------------------

// Python's repr of a float: shortest round-trip digits, exponent form below 1e-4 and from 1e16.
export function pythonFloat(x) {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, exponentText] = x.toExponential().split("e");
  const exponent = Number(exponentText);
  const sign = mantissa.startsWith("-") ? "-" : "";
  const digits = mantissa.replace("-", "").replace(".", "");
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) return `${sign}0.${"0".repeat(-exponent - 1)}${digits}`;
    const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, "0");
    return `${sign}${whole}.${digits.slice(exponent + 1) || "0"}`;
  }
  const head = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${head}e${exponent < 0 ? "-" : "+"}${String(Math.abs(exponent)).padStart(2, "0")}`;
}

function float32Text(x) {
  if (!Number.isFinite(x)) return pythonFloat(x);
  for (let digits = 1; digits <= 9; digits++) {
    const shorter = Number(x.toPrecision(digits));
    if (Math.fround(shorter) === x) return pythonFloat(shorter);
  }
  return pythonFloat(x);
}

// The display kind of a decoded field: "number" (right-aligned), "boolean", "string", "null" or "bytes".
function kindOf(field) {
  if (field.typeId === TYPE.Int || field.typeId === TYPE.FloatingPoint) return "number";
  if (field.typeId === TYPE.Bool) return "boolean";
  if (field.typeId === TYPE.Null) return "null";
  if (field.typeId === TYPE.Binary || field.typeId === TYPE.LargeBinary) return "bytes";
  return "string";
}

// How a cell shows a decoded value of `field`.
export function formatValue(value, field) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") {
    if (field.typeId === TYPE.Int) return String(value);
    return field.precision === 1 ? float32Text(value) : pythonFloat(value);
  }
  if (value instanceof Uint8Array) return Array.from(value, (b) => b.toString(16).padStart(2, "0")).join(" ");
  return String(value);
}

// Browsers cap element heights (Chromium near 33.5M px, Firefox near 17.9M px), and Chromium paints rows
// unevenly (clipped, overlapping) past 2^24 px, where its float32 positions step by 2 px. The spacer stays
// below both, and a taller table maps the scroll position proportionally onto its rows.
let maxScroll = null;
function maxScrollHeight() {
  if (maxScroll === null) {
    const probe = document.createElement("div");
    probe.style.cssText = "position: absolute; visibility: hidden; width: 1px; height: 1000000000px";
    document.body.appendChild(probe);
    const measured = probe.offsetHeight;
    probe.remove();
    maxScroll = Math.min(MAX_SCROLL, measured > 1_000_000 ? Math.floor(measured * 0.9) : 10_000_000);
  }
  return maxScroll;
}

function countText(rows) {
  return `${rows.toLocaleString("en-US")} ${rows === 1 ? "row" : "rows"}`;
}

// --- the view -------------------------------------------------------------------------------------------

function element(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.appendChild(node);
  return node;
}

class LiveTableView {
  constructor(model, el) {
    this.model = model;
    this.viewId = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
    this.version = 0; // the newest result version this view knows of
    this.noticed = 0; // the newest version whose changed rows were marked
    this.rowCount = null; // unknown until the first window arrives
    this.columns = []; // [{name, dtype}]
    this.keyColumn = null;
    this.fields = new Map(); // column name -> decoded Arrow field (its display kind and number type)
    this.widths = null; // px per column, fixed once measured so scrolling never shifts columns
    this.pages = new Map(); // page index -> [{key, cells}] for this.version and this.sortKey
    this.stale = new Map(); // the previous version's pages, shown until fresh ones arrive
    this.sortKey = this.currentSortKey();
    this.seq = 0;
    this.inflight = null; // {seq, sent}: one request at a time, the latest need wins
    this.error = null;
    this.changedUntil = new Map(); // row key -> time its highlight ends
    this.anchor = null; // row index of the last plain or ctrl click, for shift-click ranges
    this.timers = { fetch: 0, highlight: 0, frame: 0 };
    this.build(el);
    this.listen();
    this.render();
    this.fetch(); // messages sent before this view existed are lost: ask for the first window now
  }

  build(el) {
    this.root = element("div", "zapnb-livetable", el);
    this.scroller = element("div", "zapnb-scroller", this.root);
    this.scroller.tabIndex = 0;
    this.spacer = element("div", "zapnb-spacer", this.scroller);
    this.table = element("table", "zapnb-table", this.scroller);
    this.colgroup = element("colgroup", "", this.table);
    this.thead = element("thead", "", this.table);
    this.headRow = element("tr", "", this.thead);
    this.tbody = element("tbody", "", this.table);
    this.status = element("div", "zapnb-status", this.root);
    this.status.textContent = "loading…";
  }

  listen() {
    this.onMessage = (msg, buffers) => this.receive(msg, buffers);
    this.onSelection = () => this.render();
    this.onSort = () => this.sortChanged();
    this.model.on("msg:custom", this.onMessage);
    this.model.on("change:selection", this.onSelection);
    this.model.on("change:sort", this.onSort);
    this.scroller.addEventListener("scroll", () => this.scrolled(), { passive: true });
    this.thead.addEventListener("click", (event) => this.headerClicked(event));
    this.tbody.addEventListener("click", (event) => this.rowClicked(event));
    this.tbody.addEventListener("mousedown", (event) => {
      if (event.shiftKey) event.preventDefault(); // no text selection on shift-click
    });
    if (typeof ResizeObserver !== "undefined") {
      this.resize = new ResizeObserver(() => this.render());
      this.resize.observe(this.scroller);
    }
  }

  destroy() {
    this.model.off("msg:custom", this.onMessage);
    this.model.off("change:selection", this.onSelection);
    this.model.off("change:sort", this.onSort);
    this.resize?.disconnect();
    clearTimeout(this.timers.fetch);
    clearTimeout(this.timers.highlight);
    cancelAnimationFrame(this.timers.frame);
    this.root.remove();
  }

  // --- state from the model ---

  currentSort() {
    const sort = this.model.get("sort") || [];
    return sort.length === 2 ? { column: sort[0], direction: sort[1] } : null;
  }

  currentSortKey() {
    return JSON.stringify(this.model.get("sort") || []);
  }

  selection() {
    return this.model.get("selection") || [];
  }

  // --- talking to the kernel ---

  // The pages the viewport needs that are not cached, as one request, or null.
  missing() {
    if (this.rowCount === null) return { offset: 0, limit: PAGE_ROWS };
    const { start, end } = this.visibleRange();
    const first = Math.floor(start / PAGE_ROWS);
    const last = Math.max(first, Math.floor((end - 1) / PAGE_ROWS));
    const needed = [];
    for (let page = first; page <= last; page++) if (!this.pages.has(page)) needed.push(page);
    if (!needed.length) return null;
    const from = needed[0];
    const to = Math.min(needed[needed.length - 1], from + MAX_REQUEST_PAGES - 1);
    return { offset: from * PAGE_ROWS, limit: (to - from + 1) * PAGE_ROWS };
  }

  fetch() {
    if (this.inflight && performance.now() - this.inflight.sent < REQUEST_TIMEOUT_MS) return;
    const need = this.missing();
    if (!need) return;
    this.inflight = { seq: ++this.seq, sent: performance.now() };
    const sort = this.model.get("sort") || [];
    this.model.send({ type: "window", view: this.viewId, seq: this.seq, offset: need.offset, limit: need.limit, sort });
  }

  receive(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "update") this.updated(msg);
    else if (msg.type === "window" && msg.view === this.viewId) this.windowArrived(msg, buffers || []);
  }

  newVersion(version, rowCount) {
    this.version = version;
    this.rowCount = rowCount;
    if (this.pages.size) this.stale = this.pages;
    this.pages = new Map();
  }

  updated(msg) {
    if (msg.version < this.version) return;
    this.error = msg.error || null;
    if (msg.version > this.noticed) {
      // a window of this version may have arrived first: mark the rows either way
      this.noticed = msg.version;
      const until = performance.now() + HIGHLIGHT_MS;
      for (const key of msg.changed || []) this.changedUntil.set(String(key), until);
      this.scheduleHighlightEnd();
    }
    if (msg.version > this.version) {
      this.newVersion(msg.version, msg.row_count);
      this.inflight = null; // its answer is about an older result: ask again now
      this.fetch();
    }
    this.render();
  }

  windowArrived(msg, buffers) {
    if (this.inflight && msg.seq === this.inflight.seq) this.inflight = null;
    if (msg.error) {
      this.error = msg.error;
      this.renderStatus();
      return;
    }
    if (msg.version < this.version || JSON.stringify(msg.sort) !== this.sortKey) {
      this.fetch(); // an answer about an older result or another sort
      return;
    }
    if (msg.version > this.version || this.rowCount === null) this.newVersion(msg.version, msg.row_count);
    this.error = null;
    const data = decodeArrowStream(buffers[0]);
    this.setColumns(msg.columns, msg.key, data.fields);
    this.store(msg.offset, data);
    if (!this.widths) this.measure();
    this.render();
    this.fetch();
  }

  setColumns(columns, key, fields) {
    this.keyColumn = key;
    fields.forEach((field) => this.fields.set(field.name, field));
    const same =
      columns.length === this.columns.length && columns.every((c, i) => c.name === this.columns[i].name);
    if (same) return;
    this.columns = columns;
    this.widths = null;
    this.colgroup.replaceChildren(...columns.map(() => document.createElement("col")));
    this.headRow.replaceChildren(
      ...columns.map((column) => {
        const th = document.createElement("th");
        th.className = "zapnb-header";
        th.dataset.column = column.name;
        th.title = `${column.name}: ${column.dtype}`;
        if (kindOf(this.fields.get(column.name) || {}) === "number") th.classList.add("zapnb-num");
        const label = element("span", "zapnb-label", th);
        label.textContent = column.name;
        element("span", "zapnb-arrow", th);
        return th;
      }),
    );
  }

  store(offset, data) {
    const index = new Map(data.fields.map((field, i) => [field.name, i]));
    const keyIndex = index.get(this.keyColumn);
    const shown = this.columns.map((column) => {
      const i = index.get(column.name);
      const field = data.fields[i];
      return { values: data.columns[i], field, kind: kindOf(field) };
    });
    const rows = [];
    for (let r = 0; r < data.length; r++) {
      const key = String(data.columns[keyIndex][r]);
      const cells = shown.map(({ values, field, kind }) => {
        const value = values[r];
        return { text: formatValue(value, field), kind: value === null ? "null" : kind };
      });
      rows.push({ key, cells });
    }
    const firstPage = Math.floor(offset / PAGE_ROWS);
    const pageCount = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
    for (let p = 0; p < pageCount; p++) this.pages.set(firstPage + p, rows.slice(p * PAGE_ROWS, (p + 1) * PAGE_ROWS));
    this.evict();
  }

  evict() {
    if (this.pages.size <= MAX_PAGES) return;
    const { start } = this.visibleRange();
    const here = Math.floor(start / PAGE_ROWS);
    const far = [...this.pages.keys()].sort((a, b) => Math.abs(b - here) - Math.abs(a - here));
    for (const page of far.slice(0, this.pages.size - MAX_PAGES)) this.pages.delete(page);
  }

  // Column widths from the header and the first rows, measured once so that scrolling never moves them.
  measure() {
    if (!this.root.isConnected || !this.columns.length) return;
    const context = document.createElement("canvas").getContext("2d");
    const style = getComputedStyle(this.tbody);
    context.font = `${style.fontSize} ${style.fontFamily}`;
    const rows = this.pages.get(0) || [...this.pages.values()][0] || [];
    const headFont = getComputedStyle(this.thead);
    this.widths = this.columns.map((column, c) => {
      let width = 0;
      for (const row of rows.slice(0, PAGE_ROWS)) width = Math.max(width, context.measureText(row.cells[c].text).width);
      context.font = `bold ${headFont.fontSize} ${headFont.fontFamily}`;
      width = Math.max(width, context.measureText(column.name).width + 14);
      context.font = `${style.fontSize} ${style.fontFamily}`;
      return Math.round(Math.min(MAX_WIDTH, Math.max(MIN_WIDTH, width + 18)));
    });
    [...this.colgroup.children].forEach((col, i) => {
      col.style.width = `${this.widths[i]}px`;
    });
    const total = this.widths.reduce((a, b) => a + b, 0);
    this.table.style.width = `${total}px`;
    this.spacer.style.width = `${total}px`;
  }

  // --- user actions ---

  scrolled() {
    if (!this.timers.frame) {
      this.timers.frame = requestAnimationFrame(() => {
        this.timers.frame = 0;
        this.render();
      });
    }
    clearTimeout(this.timers.fetch);
    this.timers.fetch = setTimeout(() => this.fetch(), FETCH_DELAY_MS);
  }

  headerClicked(event) {
    const th = event.target.closest("th.zapnb-header");
    if (!th) return;
    const column = th.dataset.column;
    const sort = this.currentSort();
    let next = [column, "asc"];
    if (sort && sort.column === column) next = sort.direction === "asc" ? [column, "desc"] : [];
    this.model.set("sort", next); // fires change:sort here too, which refetches
    this.model.save_changes();
  }

  sortChanged() {
    const key = this.currentSortKey();
    if (key === this.sortKey) return;
    this.sortKey = key;
    this.pages = new Map();
    this.stale = new Map();
    this.anchor = null;
    this.inflight = null; // an answer in another order is dropped when it arrives
    this.scroller.scrollTop = 0;
    this.render();
    this.fetch();
  }

  rowClicked(event) {
    const tr = event.target.closest("tr.zapnb-row");
    if (!tr) return;
    const key = tr.dataset.id;
    const index = Number(tr.dataset.index);
    const adding = event.ctrlKey || event.metaKey;
    if (event.shiftKey && this.anchor !== null) {
      // the rows in between may not be loaded: the kernel knows their keys and sets the selection
      const sort = this.model.get("sort") || [];
      this.model.send({ type: "select", view: this.viewId, start: this.anchor, stop: index, sort, add: adding });
      return;
    }
    const selection = this.selection();
    let next;
    if (adding) next = selection.includes(key) ? selection.filter((k) => k !== key) : [...selection, key];
    else next = selection.length === 1 && selection[0] === key ? [] : [key];
    this.anchor = index;
    this.model.set("selection", next);
    this.model.save_changes();
  }

  scheduleHighlightEnd() {
    clearTimeout(this.timers.highlight);
    if (!this.changedUntil.size) return;
    const next = Math.min(...this.changedUntil.values());
    this.timers.highlight = setTimeout(() => {
      const now = performance.now();
      for (const [key, until] of this.changedUntil) if (until <= now) this.changedUntil.delete(key);
      this.render();
      this.scheduleHighlightEnd();
    }, Math.max(0, next - performance.now()) + 10);
  }

  // --- rendering ---

  headerHeight() {
    return this.thead.offsetHeight || ROW_HEIGHT;
  }

  // Which rows the viewport shows, plus overscan, and where the table goes.
  visibleRange() {
    const rows = this.rowCount || 0;
    const header = this.headerHeight();
    const height = this.scroller.clientHeight || VIEW_HEIGHT;
    const virtual = rows * ROW_HEIGHT;
    const real = Math.min(virtual, maxScrollHeight());
    const maxReal = Math.max(0, real + header - height);
    const maxVirtual = Math.max(0, virtual + header - height);
    const scale = maxReal > 0 ? maxVirtual / maxReal : 1;
    const scrollTop = this.scroller.scrollTop;
    const top = scrollTop * scale;
    const first = Math.min(Math.floor(top / ROW_HEIGHT), Math.max(0, rows - 1));
    const visible = Math.ceil(Math.max(0, height - header) / ROW_HEIGHT) + 1;
    const start = Math.max(0, first - OVERSCAN);
    const end = Math.min(rows, first + visible + OVERSCAN);
    const tableTop = Math.round(scrollTop - (top - start * ROW_HEIGHT)); // whole pixels, crisp rows
    return { start, end, tableTop, spacer: header + real };
  }

  rowAt(index) {
    const page = Math.floor(index / PAGE_ROWS);
    const rows = this.pages.get(page) || this.stale.get(page);
    return rows ? rows[index - page * PAGE_ROWS] : undefined;
  }

  render() {
    if (this.widths === null && this.pages.size) this.measure();
    this.renderHeader();
    this.renderStatus();
    if (this.rowCount === null) return;
    const { start, end, tableTop, spacer } = this.visibleRange();
    this.spacer.style.height = `${spacer}px`;
    this.table.style.top = `${tableTop}px`;
    const selected = new Set(this.selection());
    const now = performance.now();
    const fragment = document.createDocumentFragment();
    for (let index = start; index < end; index++) {
      const row = this.rowAt(index);
      const tr = document.createElement("tr");
      if (!row) {
        tr.className = "zapnb-placeholder";
        const td = element("td", "", tr);
        td.colSpan = Math.max(1, this.columns.length);
        fragment.appendChild(tr);
        continue;
      }
      tr.className = "zapnb-row";
      tr.dataset.id = row.key;
      tr.dataset.index = String(index);
      if (selected.has(row.key)) tr.classList.add("zapnb-selected");
      if ((this.changedUntil.get(row.key) || 0) > now) tr.classList.add("zapnb-changed");
      for (const cell of row.cells) {
        const td = element("td", `zapnb-${cell.kind}`, tr);
        td.textContent = cell.text;
        if (cell.text.length > 12) td.title = cell.text;
      }
      fragment.appendChild(tr);
    }
    this.tbody.replaceChildren(fragment);
  }

  renderHeader() {
    const sort = this.currentSort();
    for (const th of this.headRow.children) {
      const sorted = sort && sort.column === th.dataset.column;
      if (sorted) th.dataset.sort = sort.direction;
      else delete th.dataset.sort;
      th.lastChild.textContent = sorted ? (sort.direction === "asc" ? " ↑" : " ↓") : "";
    }
  }

  renderStatus() {
    if (this.rowCount === null) {
      this.status.textContent = this.error ? `error: ${this.error}` : "loading…";
      return;
    }
    const parts = [countText(this.rowCount)];
    const sort = this.currentSort();
    if (sort) parts.push(`sorted by ${sort.column} ${sort.direction === "asc" ? "↑" : "↓"}`);
    const selected = this.selection().length;
    if (selected) parts.push(`${selected.toLocaleString("en-US")} selected`);
    if (this.error) parts.push(this.error);
    this.status.textContent = parts.join(" · ");
    this.status.classList.toggle("zapnb-error", Boolean(this.error));
  }
}

function render({ model, el }) {
  const view = new LiveTableView(model, el);
  return () => view.destroy();
}

export default { render };
