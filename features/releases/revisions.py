"""Git revisions as Argo CD reports them (full 40-character SHAs) and as people type them
(abbreviated SHAs, tags, branches): compare the first by prefix, show them short.
"""

from __future__ import annotations

import re

SHA_ABBREVIATION = re.compile(r"^[0-9A-Fa-f]{7,40}$")
"""A git commit SHA, full or abbreviated (7 or more hex digits, as git and Argo CD take)."""


def same_commit(full: str | None, wanted: str | None) -> bool:
    """Whether `full` (a SHA as Argo CD reports it) is the commit `wanted` names: the same
    SHA, or `wanted` abbreviates it (7 or more hex digits). A tag or a branch never
    matches by name; compare what Argo CD resolved it to."""
    if not full or not wanted:
        return False
    full, wanted = full.lower(), wanted.lower()
    return full == wanted or (
        SHA_ABBREVIATION.fullmatch(wanted) is not None and full.startswith(wanted)
    )


def short_sha(revision: str | None) -> str:
    """A full SHA shortened to 7 characters, as git and Argo CD's UI show it; anything
    else (a tag, a branch, an abbreviation) as it is."""
    if revision and len(revision) == 40 and SHA_ABBREVIATION.fullmatch(revision):
        return revision[:7]
    return revision or "?"
