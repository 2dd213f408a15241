"""A teammate in another process, for 03-live-tables.ipynb: adds two tasks, then completes every open one.

The notebook starts it with its own data directory in ``ZAPNB_DATA_DIR`` and watches the changes arrive. It
writes a moment apart so that the live table's updates can be followed; run it by hand the same way:

    ZAPNB_DATA_DIR=zapnb-data python writer.py
"""

from __future__ import annotations

import time

import zapnb

PAUSE = 0.3  # seconds between two writes
NEW_TASKS = ("Fix the login bug", "Write the release notes")


def main() -> None:
    with zapnb.connect() as db:  # $ZAPNB_DATA_DIR: the notebook's database
        for text in NEW_TASKS:
            db.insert("tasks", {"text": text, "owner": "sam", "done": False})
            time.sleep(PAUSE)
        open_tasks = db.query("tasks").filter(lambda q: q.eq(q.field("done"), False)).collect()
        for task_id in open_tasks["_id"]:  # in creation order, oldest first
            db.patch(task_id, {"done": True})
            time.sleep(PAUSE)


if __name__ == "__main__":
    main()
