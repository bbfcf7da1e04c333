"""The documentation stays true to the code: the command reference is what `--help` prints, it
names every command and option, and every relative link in the README and docs/ leads to a file."""

import re

from cogapp import Cog

from conftest import REPO
from inspector.cli import cli

DOCS = REPO / "docs"


def _commands(group, path=()):
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


def test_the_command_reference_is_what_help_prints_now():
    cog = Cog()
    cog.options.check = True  # like `cog --check`: compare, write nothing
    cog.options.verbosity = 0
    assert cog.main(["cog", "--check", str(DOCS / "cli.md")]) == 0, "docs/cli.md is out of date: run cog -r docs/cli.md"


def test_the_command_reference_names_every_command_and_option():
    reference = (DOCS / "cli.md").read_text()
    for path, command in _commands(cli):
        assert f"## `{' '.join(('inspector', *path))}`" in reference, path
        for param in command.params:
            for option in param.opts:
                if option.startswith("--"):
                    assert option in reference, (path, option)


def test_every_relative_link_in_the_readme_and_docs_leads_to_a_file():
    pages = [REPO / "README.md", *DOCS.rglob("*.md")]
    checked = 0
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links to a missing {target}"
            checked += 1
    assert checked >= 10  # the README and the docs do link to each other
