"""``cwm weights``: list the registered weights, and download official releases when asked."""
from __future__ import annotations

import argparse

from cwm.cli.common import CWMArgumentParser, add_command

EXAMPLES = """\
cwm weights list
cwm weights download eccv2024-2frame          # into $CWM_CACHE or ~/.cache/cwm, with a progress bar
cwm flow video.mp4 --weights eccv2024-2frame  # then use it by name
"""


def register(sub) -> argparse.ArgumentParser:
    p = add_command(sub, "weights", "list or download weights", EXAMPLES,
                    description="Registered weights: the embedded default model and the official "
                                "releases. Nothing is downloaded unless you ask for it.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                               parser_class=CWMArgumentParser)
    actions.add_parser("list", help="show every registered name, where it lives and whether it is local",
                       allow_abbrev=False)
    d = actions.add_parser("download", help="download an official release into the cache", allow_abbrev=False)
    d.add_argument("name", metavar="NAME", help="a name from `cwm weights list`")
    d.add_argument("--force", action="store_true", help="download again even if cached")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar; print only the file's path")
    return p


def run(args: argparse.Namespace) -> int:
    from cwm import hub

    if args.action == "download":
        print(hub.download(args.name, force=args.force, progress=not args.quiet))
        return 0
    rows = [("NAME", "LOCAL", "DESCRIPTION")]
    for name, entry in hub.WEIGHTS.items():
        rows.append((name, "yes" if hub.is_cached(name) else "no", entry.description))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    for name, local, desc in rows:
        print(f"{name:<{width[0]}}  {local:<{width[1]}}  {desc}")
    print(f"cache: {hub.cache_dir()}")
    return 0
