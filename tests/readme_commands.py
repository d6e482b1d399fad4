"""Run the README's commands in order, as printed, the way a new user would (a CI step).

The "Use it" block of README.md is read line by line; every ``visionnets ...`` command runs in
that order, in a fresh folder beside the data (``shared/`` next to it, as beside a clone, so
``../shared/data`` resolves as written). Commands that start new work get small budgets
appended, so the whole block runs in a couple of minutes on 2 CPU cores: the commands
themselves are never edited, and those that continue a run (``--resume``, ``--extend``,
``eval``, ``show``) run exactly as printed on what the earlier ones made.

    python tests/readme_commands.py            # exit 0 when every command exits 0
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# appended to commands that start new work: (pattern on the printed command, extra arguments)
BUDGETS = [
    (r"^train mnist_", ["--set", "data.options.subsample=1000", "--set", "train.max_steps_per_epoch=3"]),
    (r"^train digits_convnet", ["--set", "train.epochs=1"]),
    (r"^compare ", ["--quick", "--methods", "knn", "linear", "--set", "train.max_steps_per_epoch=3"]),
    (r"^coates ", ["--n-train", "300", "--n-test", "200", "--n-features", "16", "--n-patches", "2000", "--C", "10"]),
]


def commands(readme: Path) -> list[str]:
    """The ``visionnets`` lines of the README's "Use it" bash block, comments removed."""
    text = readme.read_text(encoding="utf-8")
    section = text[text.index("## Use it"):]
    block = section[section.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("visionnets ")]


def main() -> int:
    shared = Path(os.environ.get("VISIONNETS_DATA", REPO.parent / "shared" / "data")).resolve().parent
    if not (shared / "data").is_dir():
        print(f"readme_commands: no data folder at {shared / 'data'}", file=sys.stderr)
        return 2
    exe = [sys.executable, "-m", "visionnets"]
    env = {k: v for k, v in os.environ.items() if k != "VISIONNETS_DATA"}    # as a new user's shell
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "shared").symlink_to(shared)
        work = Path(tmp) / "clone"
        work.mkdir()
        for line in commands(REPO / "README.md"):
            args = shlex.split(line)[1:]
            printed = " ".join(args)
            extra = next((budget for pattern, budget in BUDGETS if re.search(pattern, printed)), [])
            t0 = time.perf_counter()
            p = subprocess.run(exe + args + extra, cwd=work, env=env, capture_output=True, text=True)
            status = "ok" if p.returncode == 0 else f"FAILED (exit {p.returncode})"
            print(f"{status:>20}  {time.perf_counter() - t0:6.1f} s  visionnets {printed}"
                  + (f"   [+ {' '.join(extra)}]" if extra else ""), flush=True)
            if p.returncode != 0:
                failed += 1
                print("\n".join("    " + line for line in (p.stdout + p.stderr).strip().splitlines()[-15:]))
    print(f"readme_commands: {failed} of {len(commands(REPO / 'README.md'))} commands failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
