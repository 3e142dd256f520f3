"""``holdsgm config --list [SECTION]``: every config key with its type, default and meaning."""

from __future__ import annotations

from . import HelpFormatter


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "config",
        help="list every config key with its type, default and meaning",
        description="The config reference (also docs/config.md): each section's keys, then the parameters "
        "it passes on (SDE presets, data loaders, networks). Set any key with --set section.key=value.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("section", nargs="?", default=None, metavar="SECTION",
                   help="one section: sde, data, model, train, sample, eval or stage2")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="the keys as text (what runs without an option)")
    what.add_argument("--markdown", action="store_true", help="all of it as docs/config.md")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ConfigError
    from ..runs.reference import markdown, text

    if args.markdown:
        if args.section:
            raise ConfigError("--markdown writes the whole reference; give no SECTION")
        print(markdown(), end="")
    else:
        print(text(args.section))
    return 0
