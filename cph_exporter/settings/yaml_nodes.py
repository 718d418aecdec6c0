"""Strict reading of a YAML config file, node by node, shared by the exporter's config files.

The YAML is composed to nodes rather than loaded to values, so that duplicate keys are seen
and scalars are read as written (``0123`` stays ``0123``; ``X-XSS-Protection: 0`` is the
string "0", as Go's YAML reads it). Every problem stops the load with one line naming the
file, the key path and what is wrong. No message echoes a value it does not have to: misplaced
values are named by their type only, since a misplaced value may be a password.

A file's parser subclasses :class:`NodeParser`, naming its error type and message label, and
adds the readers its format needs.
"""

from __future__ import annotations

import os
import re
import stat
from typing import ClassVar, NoReturn

import yaml

NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def show(text: str, also: str = "") -> str:
    """A user-written key or value, made safe for a one-line message.

    Words, '.', '-' and '/' (and the characters in ``also``) are shown as they are; anything
    else is quoted, and cut after 80 characters.
    """
    if re.fullmatch(rf"[\w.\-/{re.escape(also)}]{{1,80}}", text):
        return text
    shown = repr(text[:80])
    return shown + "..." if len(text) > 80 else shown


class NodeParser:
    """Reads the nodes of the file ``source``; every failure raises ``error`` with one line.

    Subclasses set ``error`` and ``label`` (the message starts ``"{label} {source}: "``), and
    may change how unknown keys and non-scalar keys are reported.
    """

    error: ClassVar[type[Exception]]
    label: ClassVar[str]
    # Characters shown unquoted in keys besides those of show().
    show_also: ClassVar[str] = ""
    bad_key: ClassVar[str] = "keys must be plain strings"

    def __init__(self, source: str) -> None:
        self.source = source
        self.folder = os.path.dirname(os.path.abspath(source))

    def read(self) -> tuple[bytes, int]:
        """The file's bytes and mode; a file that cannot be read stops the load."""
        try:
            with open(self.source, "rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                if stat.S_ISDIR(mode):
                    raise IsADirectoryError(21, "Is a directory")
                return handle.read(), mode
        except OSError as exc:
            self.complain(f"cannot read the file: {exc.strerror or type(exc).__name__}")

    def complain(self, message: str) -> NoReturn:
        """Stop the load with a message about the file as a whole."""
        raise self.error(f"{self.label} {self.source}: {message}")

    def fail(self, keypath: str, message: str) -> NoReturn:
        self.complain(f"{keypath}: {message}")

    def compose(self, data: bytes) -> yaml.Node:
        """The file's root node; an empty file (no document, or only comments) is null."""
        try:
            root = yaml.compose(data, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
            # Only the parser's own words: its snippet of the line could hold a secret.
            problem = f"not valid YAML at {where}: {exc.problem or exc.context}"
        except yaml.YAMLError as exc:
            problem = f"not valid YAML: {' '.join(str(exc).split())}"
        else:
            return yaml.ScalarNode(NULL_TAG, "") if root is None else root
        # Raised outside the handlers, so no traceback chains the YAML error (and its snippet).
        self.complain(problem)

    @staticmethod
    def is_null(node: yaml.Node) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG

    @staticmethod
    def kind(node: yaml.Node) -> str:
        """What a node is, by type only: a misplaced value may be a password pasted by mistake."""
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        kinds = {"bool": "true/false", "int": "a number", "float": "a number", "null": "nothing"}
        return kinds.get(str(node.tag).rsplit(":", 1)[-1], "a string")

    def unknown_key(self, key: str, dotted: str, allowed: tuple[str, ...]) -> str:
        """The message for ``key`` (at ``dotted``, the full path unquoted) not in ``allowed``."""
        return f"unknown key (allowed: {', '.join(allowed)})"

    def mapping(
        self, node: yaml.Node, keypath: str, allowed: tuple[str, ...] | None
    ) -> dict[str, yaml.Node]:
        """A mapping's entries, in file order; null is an empty mapping. ``allowed`` None: any.

        ``keypath`` "top level" is the root, whose keys are named without a prefix.
        """
        if self.is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(keypath, f"expected a mapping, got {self.kind(node)}")
        out: dict[str, yaml.Node] = {}
        prefix = f"{keypath}." if keypath != "top level" else ""
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                self.fail(keypath, self.bad_key)
            key = str(key_node.value)
            where = prefix + show(key, self.show_also)
            if key in out:
                self.fail(where, f"duplicate key (line {key_node.start_mark.line + 1})")
            if allowed is not None and key not in allowed:
                self.fail(where, self.unknown_key(key, prefix + key, allowed))
            out[key] = value_node
        return out

    def boolean(self, node: yaml.Node, keypath: str, default: bool | None = None) -> bool:
        """true or false; null is ``default`` when one is given, else an error."""
        if default is not None and self.is_null(node):
            return default
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL_TAG:
            return bool(yaml.constructor.SafeConstructor.bool_values[str(node.value).lower()])
        self.fail(keypath, f"expected true or false, got {self.kind(node)}")
