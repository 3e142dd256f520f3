"""The ``holdsgm`` command line (one entry point, one module per subcommand)."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default once: added where the help text does not already say it, and
    left out where there is none to show (None, or False for a flag)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


class _KeyValue(argparse.Action):
    """``--set KEY=VALUE``, appended to ``args.overrides``; a value without ``=`` (``--set train.steps 100``)
    is a one-line :class:`~holdsgm.errors.ConfigError` at once, not argparse's later "unrecognized
    arguments: 100"."""

    def __call__(self, parser, namespace, value, option_string=None):
        from ..errors import ConfigError

        if "=" not in value:
            raise ConfigError(f"--set expects key=value with no spaces around '=' (e.g. --set train.steps=100), "
                              f"got {value!r}")
        getattr(namespace, self.dest).append(value)


def add_set_argument(p, help_text: str = "override a config value (repeatable)") -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``: the config override shared by subcommands."""
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action=_KeyValue, default=[], help=help_text)


def sampler_spec(text: str) -> str:
    """argparse type of ``--sampler``: a sampler name or spec ``name:key=value,...``, checked now."""
    from ..samplers import check_sampler

    try:
        check_sampler(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(" ".join(str(e).split())) from None
    return text


def add_sampler_argument(p, default: str = "the run's config sample.sampler") -> None:
    """``--sampler SPEC``, the same for every command that samples (sample, eval, demo, vocode)."""
    from ..samplers import SAMPLERS

    p.add_argument(
        "--sampler", type=sampler_spec, default=None, metavar="SPEC",
        help=f"sampler name or spec 'name:key=value,...' (e.g. 'unipc3:ref_var=0.01,grid=logsnr' or "
        f"'sscs:sigma_min=0.005'); names: {', '.join(sorted(SAMPLERS))} (default: {default})")
