#!/usr/bin/env python3
"""A strata-run stopped by a signal removes its temporary storage directory and dies of the signal.

usage: check_signal_cleanup.py SIGNAL -- COMMAND...
Runs COMMAND (one process) with TMPDIR set to a fresh directory; once the run has logged its
temporary storage directory ("storage tier in temporary directory D"), and D exists, sends SIGNAL
(TERM, INT or HUP) to it. The run must end killed by SIGNAL, and TMPDIR must hold no strata-* entry.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit(__doc__)
    sig = getattr(signal, "SIG" + sys.argv[1])
    cmd = sys.argv[3:]
    with tempfile.TemporaryDirectory() as tmp:
        private_tmp = os.path.join(tmp, "tmp")
        os.mkdir(private_tmp)
        env = dict(os.environ, TMPDIR=private_tmp)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env)
        out = []
        storage = None
        for line in p.stdout:  # the line is logged after the directory was made and owned
            out.append(line)
            m = re.search(r"storage tier in temporary directory (\S+)", line)
            if m:
                storage = m.group(1)
                break
        if storage is None:
            p.wait()
            sys.exit(f"the run never logged its temporary storage directory (exit "
                     f"{p.returncode}):\n{''.join(out)[-3000:]}")
        if not os.path.isdir(storage) or not storage.startswith(private_tmp + "/strata-"):
            p.kill()
            sys.exit(f"logged storage directory {storage} is not a strata-* directory in TMPDIR")
        p.send_signal(sig)
        out.append(p.stdout.read())
        rc = p.wait()
        text = "".join(out)
        if rc != -sig:
            sys.exit(f"expected the run to die of {signal.Signals(sig).name}, got exit {rc}:\n"
                     f"{text[-3000:]}")
        left = [n for n in os.listdir(private_tmp) if n.startswith("strata-")]
        if left:
            sys.exit(f"temporary storage left in TMPDIR after {signal.Signals(sig).name}: "
                     f"{left}\n{text[-3000:]}")
        if "removed temporary storage directory" not in text:
            sys.exit(f"no log line about the removal:\n{text[-3000:]}")
        print(f"ok: {signal.Signals(sig).name} ended the run and removed {storage}")


if __name__ == "__main__":
    main()
