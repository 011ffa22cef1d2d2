# Runs short commands (git, the preflight's compile) for a Nightlab worker; see spawn.ts.
#
# A request is one JSON line on stdin: {"id", "argv", "cwd", "env", "input" (base64 or null)}.
# The reply is one JSON line on stdout: {"id", "code", "out", "err"} (base64), or {"id", "error"}
# when the command could not be started. Each request runs on a thread of its own, so slow
# commands do not hold up quick ones; the helper ends when its stdin closes.
import base64
import json
import subprocess
import sys
import threading

write_lock = threading.Lock()


def handle(req):
    try:
        stdin = {"input": base64.b64decode(req["input"])} if req.get("input") is not None else {"stdin": subprocess.DEVNULL}
        p = subprocess.run(req["argv"], cwd=req["cwd"], env=req["env"], capture_output=True, **stdin)
        reply = {
            "id": req["id"],
            "code": p.returncode,
            "out": base64.b64encode(p.stdout).decode("ascii"),
            "err": base64.b64encode(p.stderr).decode("ascii"),
        }
    except OSError as e:
        reply = {"id": req["id"], "error": f"{e.strerror or e} ({req['argv'][0]})", "errno": e.errno}
    except Exception as e:  # never leave a request unanswered
        reply = {"id": req["id"], "error": f"{type(e).__name__}: {e}", "errno": None}
    line = json.dumps(reply) + "\n"
    with write_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


for line in sys.stdin:
    threading.Thread(target=handle, args=(json.loads(line),), daemon=True).start()
