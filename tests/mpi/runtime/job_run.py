"""The pieces the job-control checkers share (check_clean_stop.py, check_rank_kill.py): a job
run in the background in its own session with its output collected, and a process's children."""

import os
import signal
import subprocess
import threading
import time


def children(pid):
    """The pids of the direct children of `pid` (from /proc, all its threads)."""
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    return sorted(set(kids))


class Run:
    """The job in the background, in its own session; its output is collected by a thread."""

    def __init__(self, cmd, env):
        self.lines = []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self):
        return "".join(self.lines)

    def wait_for(self, needle, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return True
            if self.proc.poll() is not None:
                self.reader.join(5)
                return needle in self.text()
            time.sleep(0.2)
        return False

    def finish(self, timeout):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None
        self.reader.join(10)
        return rc
