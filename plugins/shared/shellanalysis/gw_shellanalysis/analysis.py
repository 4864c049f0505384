"""The walk over a parsed command line: every simple command, what it runs and the paths it names.

The line is walked as bash would run it, with one simplification that only ever adds: a working directory or
a variable has, everywhere in the line, every value it is given anywhere in the line (so loops, functions
and branches need no control flow; a path is matched against every directory it could be relative to).
The walk repeats until these sets stop growing.

Whatever gw cannot reduce to a fixed program and fixed arguments makes the line ``unknown`` with a reason.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from gw.model import Kind

from . import paths
from . import programs as P
from .model import Analysis, ShellContext
from .options import OptionSpec, Parsed, parse_options, spec
from .parse import _quoted_heredoc, parse

#: Longest line analysed (characters); a longer one is ``unknown``.  Analysis costs tens of microseconds per
#: word, so callers on an event loop should run long lines in a worker thread (it is thread-safe).
MAX_TEXT = 64 * 1024
#: Shells nested in shells (``sh -c "bash -c '...'"``) followed this deep.
MAX_DEPTH = 8
#: Values one word may take (variables with several values, brace expansion ...) before it is any value.
MAX_ALTERNATIVES = 32
#: Objects reported; more are folded into one pattern.
MAX_OBJECTS = 64
#: Working directories tracked; more make relative paths relative to any directory.
MAX_CWDS = 16
_MAX_ROUNDS = 4

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ARITH_NUMBER = re.compile(r"\b(?:\d+#[0-9A-Za-z@_]+|0[xX][0-9A-Fa-f]+|\d+)\b")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMERIC_SPECIAL = frozenset({"#", "?", "$", "!", "-"})
_STDIN_PATHS = frozenset({"-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "/dev/tty"})
#: Words that are shell syntax; as a program name they mean the grammar misread the line.
_RESERVED = frozenset({"{", "}", "]]", "then", "else", "elif", "fi", "do", "done", "esac", "in", "!", "case",
                       "if", "while", "until", "for", "select", "function", "[[", "((", "))"})
#: Shells whose ``-c`` code is bash-compatible enough for gw to read with the bash grammar.
_SH_FAMILY = frozenset({"sh", "bash", "dash", "ash", "ksh", "mksh", "pdksh", "rbash", "posh", "hush", "yash"})
_TIME_KEYWORD = spec(short="p")
#: Short options whose value is a file, per program.
_FILE_VALUES = frozenset({("tar", "-f"), ("tar", "-C"), ("tar", "-T"), ("tar", "-X"), ("sort", "-o"),
                          ("cp", "-t"), ("mv", "-t"), ("ln", "-t"), ("install", "-t"), ("grep", "-f"),
                          ("tee", "-a"), ("diff", "-X"), ("jq", "-f"), ("curl", "-o"), ("curl", "-T"),
                          ("curl", "-K"), ("wget", "-O"), ("wget", "-i"), ("scp", "-i"), ("scp", "-F"),
                          ("git", "-F"), ("touch", "-r"), ("truncate", "-r"), ("date", "-f"), ("date", "-r"),
                          ("stat", "-f"), ("unzip", "-d"), ("zip", "-b")})
#: Long options whose value is a file, whatever the program.
_FILE_OPTIONS = frozenset({"file", "input", "output", "in", "out", "reference", "from-file", "files-from",
                           "arg-file", "log-file", "config", "key", "cert", "directory", "target-directory"})

# ---------------------------------------------------------------------------------------------------------------
# Values of words
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One word after expansion: a glob (see :mod:`gw_shellanalysis.paths`) and, when it is exact text that
    no pathname expansion changes, that text."""

    pattern: str
    literal: str | None


UNKNOWN = Field("*", None)
_ONE_UNKNOWN: list[tuple[Field, ...]] = [(UNKNOWN,)]


def _lit(text: str) -> Field:
    return Field(paths.escape(text), text)


def _glob(text: str) -> Field:
    """Unquoted text: ``*``, ``?`` and ``[`` in it are pathname expansion."""
    if any(c in "*?[" for c in text):
        return Field(text, None)
    return Field(text, text)


Alts = list[tuple[Field, ...]]


def _join(a: Field, b: Field) -> Field:
    literal = a.literal + b.literal if a.literal is not None and b.literal is not None else None
    return Field(a.pattern + b.pattern, literal)


def _concat(a: Alts, b: Alts) -> Alts:
    out: Alts = []
    for x in a:
        for y in b:
            if not x:
                out.append(y)
            elif not y:
                out.append(x)
            else:
                out.append(x[:-1] + (_join(x[-1], y[0]),) + y[1:])
            if len(out) > MAX_ALTERNATIVES:
                return list(_ONE_UNKNOWN)
    return out


@dataclass(frozen=True, slots=True)
class Arg:
    """A word as a program receives it: every field it may expand to, and its text when that is certain."""

    fields: tuple[Field, ...]
    text: str | None

    @staticmethod
    def of(alts: Alts) -> Arg:
        fields = tuple(dict.fromkeys(f for alt in alts for f in alt))
        text = alts[0][0].literal if len(alts) == 1 and len(alts[0]) == 1 else None
        return Arg(fields, text)

    @staticmethod
    def literal(text: str) -> Arg:
        return Arg((_lit(text),), text)


UNKNOWN_ARG = Arg((UNKNOWN,), None)

# ---------------------------------------------------------------------------------------------------------------
# What the walk learns about the line (grows between rounds)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Var:
    fields: list[Field] = field(default_factory=list)
    #: Some assignment's value gw cannot know (``read x``, ``x+=...``).
    unknown: bool = False
    #: Byte offset of the first assignment (a use before it sees the environment's value).
    first: int = 1 << 62
    #: Every assignment is a number or arithmetic.
    numeric: bool = True


@dataclass
class _State:
    cwds: list[str]
    vars: dict[str, _Var] = field(default_factory=dict)
    #: IFS is assigned: unquoted expansions split in ways gw does not follow.
    ifs: bool = False
    links: dict[str, str] = field(default_factory=dict)
    #: Files the line makes from others (cp, install, mv, ln): a program run from one is the other.
    copies: dict[str, str] = field(default_factory=dict)
    changed: bool = False

    def add_cwd(self, cwd: str) -> None:
        if cwd in self.cwds:
            return
        self.changed = True
        if len(self.cwds) >= MAX_CWDS:
            if "*" not in self.cwds:
                self.cwds.append("*")
            return
        self.cwds.append(cwd)

    def assign(self, name: str, values: list[Field] | None, offset: int, numeric: bool) -> None:
        var = self.vars.get(name)
        if var is None:
            var = self.vars[name] = _Var()
            self.changed = True
        if offset < var.first:
            var.first = offset
            self.changed = True
        if not numeric and var.numeric:
            var.numeric = False
            self.changed = True
        if values is None:
            if not var.unknown:
                var.unknown = True
                self.changed = True
            return
        for v in values:
            if v not in var.fields:
                if len(var.fields) >= MAX_ALTERNATIVES:
                    if not var.unknown:
                        var.unknown = True
                        self.changed = True
                    return
                var.fields.append(v)
                self.changed = True


# ---------------------------------------------------------------------------------------------------------------
# The walk
# ---------------------------------------------------------------------------------------------------------------


class _Walk:
    """One pass over one parsed line (nested shells get a walk of their own)."""

    def __init__(self, source: bytes, ctx: ShellContext, state: _State, depth: int) -> None:
        self.source = source
        self.ctx = ctx
        self.state = state
        self.depth = depth
        self.verbs: list[str] = []
        self.primary: str | None = None
        self.objects: list[str] = []
        self.flags: set[str] = set()
        self.reasons: list[str] = []
        self.interactive: list[str] = []
        #: Depth of command and process substitutions around the node being visited.
        self.substituting = 0
        #: Paths with ``..`` after a name, as written: only the target can say where they lead.
        self.physical: list[str] = []
        #: The program being read acts on whole directory trees (its paths' contents are objects too).
        self.recursive = False
        #: Programs run by path (absolute patterns): a link or copy may give them another name.
        self.programs: list[str] = []

    # -- results --------------------------------------------------------------------------------------------
    def unknown(self, reason: str, flag: str = "opaque") -> None:
        self.flags.add(flag)
        if reason not in self.reasons:
            self.reasons.append(reason)

    def merge(self, other: _Walk) -> None:
        self.physical.extend(other.physical)
        self.programs.extend(other.programs)
        self.verbs.extend(other.verbs)
        if self.primary is None:
            self.primary = other.primary
        self.objects.extend(other.objects)
        self.flags |= other.flags
        for r in other.reasons:
            if r not in self.reasons:
                self.reasons.append(r)
        self.interactive.extend(other.interactive)

    def add_path(self, f: Field, cwds: list[str] | None = None) -> None:
        """An object: ``f`` resolved against every directory the command may run in.  A path with ``..``
        after a name is also kept as written, for the target to resolve (``link/..`` is the parent of the
        link's target, not of the link)."""
        pattern = f.pattern
        if not pattern:
            return
        if pattern.startswith(("/", "*")):
            full = [pattern]
        else:
            full = [c.rstrip("/") + "/" + pattern if c != "/" else "/" + pattern
                    for c in (cwds if cwds is not None else self.state.cwds)]
        for p in full:
            normal = paths.normalise(p)
            self.objects.append(normal)
            for other in paths.process_relative(normal, cwds if cwds is not None else self.state.cwds) or ():
                self.objects.append(other)
                if other.startswith("/"):
                    self.physical.append(other)
            if p.startswith("/") and paths.climbs(p):
                self.physical.append(paths.collapse(p))
        if self.recursive:
            for p in full:
                self.objects.append(paths.normalise(p).rstrip("/") + "/*")

    def add_arg_paths(self, arg: Arg, cwds: list[str] | None = None) -> None:
        for f in arg.fields:
            self.add_path(f, cwds)

    # -- nodes ----------------------------------------------------------------------------------------------
    def text(self, node: Any) -> str:
        return self.source[node.start_byte:node.end_byte].decode("utf-8", "surrogateescape")

    def visit(self, node: Any) -> None:
        t = node.type
        if t == "ERROR" or node.is_missing:
            self.unknown("gw cannot read this line as shell syntax (it may be incomplete or use syntax gw's "
                         "shell grammar does not know)", "unparsed")
            return
        handler = _VISITORS.get(t)
        if handler is not None:
            handler(self, node)
        elif t in _CONTAINERS or not node.is_named:
            self.tokens(node)
            for child in node.children:
                self.visit(child)
        else:
            self.unknown(f"the shell construct {t!r} is not one gw reads", "unparsed")

    def tokens(self, node: Any) -> None:
        if node.is_named:
            return
        t = node.type
        if t == "&":
            self.flags.add("background")
        elif t in ("|", "|&"):
            self.flags.add("pipeline")
        elif t in ("&&", "||", ";", "\n", ";;", ";&", ";;&"):
            self.flags.add("multi_command")

    def children(self, node: Any) -> None:
        for child in node.children:
            self.tokens(child)
            self.visit(child)

    # statements -------------------------------------------------------------------------------------------
    def v_program(self, node: Any) -> None:
        if node.has_error:  # an ERROR or a MISSING node anywhere (a missing "}" is not visited on its own)
            self.unknown("gw cannot read this line as shell syntax (it may be incomplete or use syntax gw's "
                         "shell grammar does not know)", "unparsed")
        statements = [c for c in node.named_children if c.type != "comment"]
        if len(statements) > 1:
            self.flags.add("multi_command")
        self.children(node)

    def v_subshell(self, node: Any) -> None:
        self.flags.add("subshell")
        self.children(node)

    def v_command_substitution(self, node: Any) -> None:
        self.flags.add("substitution")
        self.substituting += 1
        try:
            self.children(node)
        finally:
            self.substituting -= 1

    def v_function_definition(self, node: Any) -> None:
        self.flags.add("function")
        for child in node.children:
            if child.type not in ("word", "function"):
                self.visit(child)

    def v_redirected_statement(self, node: Any) -> None:
        self.children(node)

    def v_file_redirect(self, node: Any) -> None:
        self.flags.add("redirect")
        op = ""
        for child in node.children:
            if not child.is_named:
                op = child.type
        dest = node.child_by_field_name("destination")
        for child in node.children:
            if child.is_named and child.type not in ("file_descriptor",):
                self.visit_word(child)
        if dest is None:
            return
        if op in (">&", "<&") and dest.type == "number":
            return  # 2>&1: a file descriptor, not a file
        arg = self.arg(dest)
        if op in (">&", "<&") and arg.text is not None and (arg.text.isdigit() or arg.text == "-"):
            return
        self.add_arg_paths(arg)

    def v_heredoc_redirect(self, node: Any) -> None:
        self.flags.add("redirect")
        for child in node.children:
            if child.type == "heredoc_body":
                # The body of an unquoted here-doc is expanded: substitutions in it run.
                for part in child.named_children:
                    if part.type != "heredoc_content":
                        self.visit(part)
                if not _quoted_heredoc(node):
                    self.heredoc_text(self.text(child))
            elif child.type in ("heredoc_start", "heredoc_end"):
                continue
            else:
                self.tokens(child)
                self.visit(child)

    def heredoc_text(self, text: str) -> None:
        """Text of an unquoted here-document the grammar left as data: backquote substitutions run (the
        grammar does not parse them there), and arithmetic is evaluated."""
        for m in re.finditer(r"(?<!\\)`((?:[^`\\]|\\.)*)`", text):
            self.substituting += 1
            try:
                self.flags.add("substitution")
                self.nested(m.group(1), None, "`...`")
            finally:
                self.substituting -= 1
        if re.search(r"(?<!\\)`", re.sub(r"(?<!\\)`(?:[^`\\]|\\.)*`", "", text)):
            self.unknown("an unbalanced backquote in a here-document", "unparsed")
        if re.search(r"(?<!\\)\$(\(\(|\[)", text):
            self.unknown("arithmetic in a here-document gw does not read", "arithmetic")

    def v_herestring_redirect(self, node: Any) -> None:
        self.flags.add("redirect")
        for child in node.named_children:
            self.visit_word(child)

    def v_for_statement(self, node: Any) -> None:
        name = node.child_by_field_name("variable")
        values = node.children_by_field_name("value")
        if name is not None:
            var = self.text(name)
            if values:
                fields: list[Field] = []
                for v in values:
                    self.visit_word(v)
                    fields.extend(self.arg(v).fields)
                self.state.assign(var, fields, name.start_byte, numeric=False)
            else:
                self.state.assign(var, None, name.start_byte, numeric=False)  # for x; do: the positional args
        for child in node.children:
            if child.type == "do_group" or (child.is_named and child not in values and child != name):
                self.visit(child)

    def v_c_style_for_statement(self, node: Any) -> None:
        for child in node.named_children:
            if child.type in ("do_group", "compound_statement"):
                self.visit(child)
            else:
                self.arith(child)

    def v_compound_statement(self, node: Any) -> None:
        first = node.children[0] if node.children else None
        if first is not None and first.type == "((":
            for child in node.named_children:
                self.arith(child)
            return
        self.children(node)

    def v_test_command(self, node: Any) -> None:
        for child in node.named_children:
            self.test_expression(child)

    def test_expression(self, node: Any) -> None:
        if node.type == "binary_expression":
            op = next((c for c in node.children if c.type == "test_operator"), None)
            if op is not None and self.text(op) in ("-eq", "-ne", "-lt", "-le", "-gt", "-ge"):
                for child in node.named_children:
                    if child.type != "test_operator":
                        self.arith(child)
                return
        if node.type == "unary_expression":
            op = next((c for c in node.children if c.type == "test_operator"), None)
            if op is not None and self.text(op) == "-v":
                for child in node.named_children:
                    if child.type != "test_operator" and "[" in self.text(child):
                        self.unknown("[[ -v NAME[...] ]] evaluates its subscript, which can run commands",
                                     "arithmetic")
        for child in node.named_children:
            if child.type in ("binary_expression", "unary_expression", "parenthesized_expression"):
                self.test_expression(child)
            elif child.type not in ("test_operator", "regex", "extglob_pattern"):
                self.visit_word(child)

    def v_declaration_command(self, node: Any) -> None:
        keyword = node.children[0].type if node.children else ""
        for child in node.named_children:
            if child.type == "word":
                arg = self.arg(child)
                option = arg.text
                if option is None:
                    self.unknown(f"an argument of {keyword} is computed when the line runs", "dynamic")
                elif option.startswith(("-", "+")) and any(c in option for c in "in"):
                    self.unknown(f"{keyword} {option} makes later assignments evaluate arithmetic or follow "
                                 "names, which can run commands hidden in values", "arithmetic")
                elif not option.startswith(("-", "+")) and ("[" in option or "=" in option):
                    self.unknown(f"{keyword} of a computed name", "dynamic")
            elif child.type == "variable_assignment":
                self.v_variable_assignment(child, exported=keyword == "export")
            elif child.type == "variable_name":
                name = self.text(child)
                if keyword == "export" and P.dangerous_environment(name):
                    self.unknown(f"export {name} changes which program runs or what it loads", "environment")
            else:
                self.visit_word(child)

    def v_unset_command(self, node: Any) -> None:
        for child in node.named_children:
            if child.type == "variable_name":
                continue
            arg = self.arg(child)
            self.visit_word(child)
            if arg.text is None or "[" in arg.text:
                self.unknown("unset of a subscripted or computed name evaluates it, which can run commands",
                             "arithmetic")

    def v_variable_assignment(self, node: Any, *, exported: bool = False, prefix: bool = False) -> None:
        name_node = node.child_by_field_name("name")
        value = node.child_by_field_name("value")
        if name_node is None:
            return
        if name_node.type == "subscript":
            index = name_node.child_by_field_name("index")
            if index is not None:
                self.arith(index)
            base = name_node.child_by_field_name("name")
            name = self.text(base) if base is not None else ""
        else:
            name = self.text(name_node)
        if P.dangerous_environment(name):
            if name == "IFS":
                self.state.ifs = True
            self.unknown(f"assigning {name} changes which program runs, what it loads or how the line is read",
                         "environment")
        appending = any(c.type == "+=" for c in node.children)
        if value is None:
            self.state.assign(name, [_lit("")], node.start_byte, numeric=False)
            return
        self.visit_word(value)
        numeric = value.type in ("number", "arithmetic_expansion") or (
            value.type == "simple_expansion" and self.text(value)[1:] in _NUMERIC_SPECIAL)
        if appending:
            self.state.assign(name, None, node.start_byte, numeric=numeric)
            return
        if value.type == "array":
            fields: list[Field] = []
            for element in value.named_children:
                fields.extend(self.arg(element).fields)
            self.state.assign(name, fields, node.start_byte, numeric=False)
            return
        alts = self.eval(value, assignment=True)
        self.state.assign(name, [f for alt in alts for f in alt] or [_lit("")], node.start_byte, numeric)

    def v_variable_assignments(self, node: Any) -> None:
        self.children(node)

    def v_arithmetic_expansion(self, node: Any) -> None:
        for child in node.named_children:
            self.arith(child)

    def v_expansion(self, node: Any) -> None:
        text = self.text(node)
        if re.match(r"^\$\{![A-Za-z_0-9]+\}$", text) or re.match(r"^\$\{![A-Za-z_][A-Za-z0-9_]*\[[^@*]", text):
            self.unknown("an indirect expansion (${!name}) can evaluate a subscript hidden in a value, which can "
                         "run commands", "arithmetic")
        if re.search(r"@P\}$", text):
            self.unknown("prompt expansion (${var@P}) runs command substitutions hidden in a value",
                         "arithmetic")
        for child in node.named_children:
            if child.type == "subscript":
                index = child.child_by_field_name("index")
                if index is not None and self.text(index) not in ("@", "*"):
                    self.arith(index)
            elif child.type in ("number", "simple_expansion", "expansion", "arithmetic_expansion") and \
                    re.match(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?:[^-=?+]", text):
                self.arith(child)  # ${x:offset:length}
            else:
                self.visit_word(child)
        if re.match(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:?[=]", text):
            m = re.match(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)", text)
            if m:
                self.state.assign(m.group(1), None, node.start_byte, numeric=False)

    def visit_word(self, node: Any) -> None:
        """Visit a word for what runs inside it (substitutions) and what it reads (expansions)."""
        if node.type in ("word", "number", "raw_string", "ansi_c_string", "string_content", "regex",
                         "variable_name", "heredoc_content", "extglob_pattern", "file_descriptor",
                         "special_variable_name", "test_operator"):
            return
        self.visit(node)

    # -- simple commands ------------------------------------------------------------------------------------
    def v_command(self, node: Any) -> None:
        name_node = node.child_by_field_name("name")
        args: list[Arg] = []
        for child in node.children:
            if child.type == "variable_assignment":
                self.v_variable_assignment(child, prefix=True)
                self.flags.add("env_assignment")
            elif child.type in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
                self.visit(child)
            elif child.type == "command_name":
                for part in child.named_children:
                    self.visit_word(part)
            elif child.is_named and child.type != "comment":
                self.visit_word(child)
                args.append(self.arg(child))
            else:
                self.tokens(child)
        if name_node is None:
            return
        parts = name_node.named_children
        if len(parts) != 1:
            self.unknown("gw cannot read the program name", "unparsed")
            return
        program = self.arg(parts[0])
        if program.text is None or any(d.type in _EXPANSIONS for d in _descendants(parts[0])):
            self.unknown("the program this command runs is computed when the line runs (an expansion, a "
                         "command substitution, a glob or brace expansion); name it literally", "dynamic_program")
            return
        if program.text in _RESERVED:
            self.unknown("gw cannot read this line as shell syntax (a shell keyword where a program belongs)",
                         "unparsed")
            return
        self.run(program.text, args)

    def run(self, program: str, args: list[Arg], cwds: list[str] | None = None) -> None:
        """``program`` runs with ``args`` (the heart of the analysis: wrappers recurse here)."""
        if not program:
            self.unknown("an empty program name", "dynamic_program")
            return
        name = posixpath.basename(program.rstrip("/")) if "/" in program else program
        self.verbs.append(name)
        if "/" in program:
            self.add_path(_lit(program), cwds)
            if program.startswith("/"):
                self.programs.append(paths.normalise(paths.escape(program)))
            else:
                self.programs.extend(paths.join(c, paths.escape(program))
                                     for c in (cwds if cwds is not None else self.state.cwds))
        if name in P.PRIVILEGED:
            self.flags.add("privileged")
        fam = P.family(name)
        if name in self.ctx.interactive_programs or name in P.INTERACTIVE or fam in P.INTERACTIVE:
            self.interactive.append(f"{name} (a program with shell escapes or commands of its own)")
        handler = _PROGRAMS.get(name) or _PROGRAMS.get(fam)
        if handler is not None:
            handler(self, name, args, cwds)
            return
        if name in P.ALWAYS_CODE or fam in P.ALWAYS_CODE:
            self.terminal(name)
            self.unknown(f"{name} runs commands or code gw cannot read", "runs_code")
            for a in args:
                self.add_arg_paths(a, cwds)
            return
        if fam in P.SHELLS:
            self.shell(name, fam, args, cwds)
            return
        if fam in P.INTERPRETERS:
            self.interpreter(name, fam, args, cwds)
            return
        if fam in P.CLIENT_ESCAPES:
            self.client(name, fam, args, cwds)
            return
        if name in P.RUNNER_SUBCOMMANDS:
            self.runner(name, args, cwds)
            return
        wrapper = P.WRAPPERS.get(name)
        if wrapper is not None:
            self.wrapper(name, args, wrapper[0], wrapper[1], cwds)
            return
        self.terminal(name)
        self.operands(name, args, cwds)

    def terminal(self, name: str) -> None:
        """``name`` is the program doing the work of its command (the verb, for the first command outside
        substitutions)."""
        if self.primary is None and not self.substituting:
            self.primary = name

    def run_words(self, args: list[Arg], cwds: list[str] | None, who: str) -> None:
        """``args[0]`` is a program run with the rest (what a wrapper runs)."""
        if not args:
            return
        if args[0].text is None:
            self.unknown(f"the program {who} runs is computed when the line runs", "dynamic_program")
            for a in args:
                self.add_arg_paths(a, cwds)
            return
        self.run(args[0].text, args[1:], cwds)

    def nested(self, code: str, cwds: list[str] | None, what: str) -> None:
        """Shell code given as a string (``sh -c``, ``su -c``, ``watch``, ``trap`` ...)."""
        self.flags.add("nested_shell")
        if what in ("flock -c", "watch", "su -c", "runuser -c", "script -c"):
            self.verbs.append("sh")  # these run their string with a shell of their own
        if self.depth >= MAX_DEPTH:
            self.unknown(f"shells nested more than {MAX_DEPTH} deep", "unparsed")
            return
        inner = _analyse(code.encode("utf-8", "surrogateescape"), self.ctx, self.depth + 1,
                         list(cwds if cwds is not None else self.state.cwds))
        self.merge(inner)
        if not inner.verbs and not inner.reasons and code.strip() and not inner.objects:
            return

    # -- operands as paths ----------------------------------------------------------------------------------
    def operands(self, name: str, args: list[Arg], cwds: list[str] | None) -> None:
        recursive = P.recursive(name, [a.text for a in args])
        before, self.recursive = self.recursive, recursive
        try:
            self._operands(name, args, cwds)
        finally:
            self.recursive = before

    def _operands(self, name: str, args: list[Arg], cwds: list[str] | None) -> None:
        spec_ = P.ARITY.get(name)
        no_files = name in P.NO_FILES
        operands: list[Arg] = []
        seen_options: set[str] = set()
        i = 0
        ended = False
        while i < len(args):
            a = args[i]
            t = a.text
            if not ended and t is not None and t == "--":
                ended = True
                i += 1
                continue
            if t == "-":
                i += 1
                continue  # stdin or stdout
            if not ended and t is not None and len(t) > 1 and t.startswith("-"):
                option, eq, value = t.partition("=")
                seen_options.add(option if option.startswith("--") else option[:2])
                takes = spec_ is not None and (
                    (option.startswith("--") and not eq and option[2:] in spec_.long_arg) or
                    (not option.startswith("--") and len(option) == 2 and option[1] in spec_.short_arg))
                if eq and ("/" in value or option.lstrip("-") in _FILE_OPTIONS):
                    self.add_path(_lit(value), cwds)
                elif not option.startswith("--") and "/" in t:
                    self.add_path(_lit(t[t.index("/"):]), cwds)
                if takes and i + 1 < len(args):
                    value_arg = args[i + 1]
                    if value_arg.text != "-" and (any("/" in f.pattern for f in value_arg.fields) or
                                                 option.lstrip("-") in _FILE_OPTIONS or
                                                 (name, option) in _FILE_VALUES):
                        self.add_arg_paths(value_arg, cwds)
                    i += 2
                    continue
                i += 1
                continue
            operands.append(a)
            i += 1
        if name in P.FIRST_NOT_FILE and operands and not (seen_options & P.FIRST_NOT_FILE[name]):
            operands = operands[1:]
        for a in operands:
            for f in a.fields:
                if f.literal is not None and _URL.match(f.literal):
                    continue
                if f.literal is not None and "=" in f.literal and _NAME.match(f.literal.split("=", 1)[0]):
                    value = f.literal.split("=", 1)[1]  # dd if=..., make VAR=...
                    if "/" in value or name == "dd":
                        self.add_path(_lit(value), cwds)
                    continue
                if f.literal is not None and (f.literal.isdigit() or not f.literal):
                    continue
                if no_files and not ("/" in f.pattern or f.pattern.startswith(".")):
                    continue
                self.add_path(f, cwds)

    # -- shells and interpreters ----------------------------------------------------------------------------
    def shell(self, name: str, fam: str, args: list[Arg], cwds: list[str] | None) -> None:
        parsed = parse_options([a.text for a in args], P.SHELL_OPTIONS, name)
        if parsed.problem:
            self.unknown(parsed.problem, "options")
            for a in args:
                self.add_arg_paths(a, cwds)
            return
        if parsed.has("-i"):
            self.unknown(f"{name} -i starts an interactive shell", "interactive")
            self.interactive.append(f"{name} -i (an interactive shell)")
        ops = parsed.operands
        if parsed.has("-c"):
            if not ops:
                self.unknown(f"{name} -c without the command", "unparsed")
                return
            code = args[ops[0]]
            for a in (args[k] for k in ops[1:]):
                self.add_arg_paths(a, cwds)
            if code.text is None:
                self.unknown(f"the code given to {name} -c is computed when the line runs", "runs_code")
                return
            if fam not in _SH_FAMILY:
                self.unknown(f"{name} -c runs {name} code, which gw does not read", "runs_code")
                return
            self.nested(code.text, cwds, f"{name} -c")
            self.terminal(name)
            return
        self.terminal(name)
        if ops and not parsed.has("-s"):
            script = args[ops[0]]
            if script.text is None or script.text in _STDIN_PATHS or script.text.startswith(("/dev/fd/",
                                                                                            "/proc/")):
                self.unknown(f"{name} runs a script whose name is computed or that is its input", "runs_code")
                self.interactive.append(f"{name} reading commands from its input")
            for a in (args[k] for k in ops):
                self.add_arg_paths(a, cwds)
            return
        self.unknown(f"{name} reads the commands it runs from its input, which gw does not see; pass them as "
                     f"{name} -c '...' or run each command directly", "stdin_code")
        self.interactive.append(f"{name} (a shell reading commands from its input)")

    def interpreter(self, name: str, fam: str, args: list[Arg], cwds: list[str] | None) -> None:
        self.terminal(name)
        spec_, code_options = P.INTERPRETERS[fam]
        if "(always)" in code_options:
            self.unknown(f"{name} runs code gw cannot read", "runs_code")
            self.interactive.append(f"{name} (an interpreter)")
            for a in args:
                self.add_arg_paths(a, cwds)
            return
        words = [a.text for a in args]
        cut = _python_options(words) if fam in ("python", "pypy") else len(words)
        parsed = parse_options(words[:cut], spec_, name)
        parsed.operands.extend(range(cut, len(words)))
        if parsed.problem:
            self.unknown(parsed.problem, "options")
            for a in args:
                self.add_arg_paths(a, cwds)
            return
        used = [o for o, v in parsed.options if o in code_options and not _safe_module(fam, o, v)]
        ops = [args[k] for k in parsed.operands]
        module = fam in ("python", "pypy") and parsed.has("-m")
        if ops and not module:
            self.add_arg_paths(ops[0], cwds)
        self.operands(name, ops if module else ops[1:], cwds)
        if used:
            self.unknown(f"{name} {used[0]} runs code given on its command line, which gw does not read; put "
                         "the program in a file on the target and run that", "runs_code")
            if used[0] in ("-i", "--interactive", "-a"):
                self.interactive.append(f"{name} {used[0]} (an interactive interpreter)")
            return
        if fam in ("python", "pypy") and parsed.has("-m"):
            return
        script = args[parsed.operands[0]].text if parsed.operands else None
        if script is None or script in _STDIN_PATHS or script.startswith(("/dev/fd/", "/proc/")):
            self.unknown(f"{name} reads the program it runs from its input (or a computed file), which gw does "
                         "not see", "stdin_code")
            self.interactive.append(f"{name} (an interpreter reading its program from its input)")

    def client(self, name: str, fam: str, args: list[Arg], cwds: list[str] | None) -> None:
        self.terminal(name)
        spec_, code_options, escapes = P.CLIENT_ESCAPES[fam]
        for a in args:
            if a.text is None:
                self.unknown(f"an argument of {name} is computed when the line runs", "dynamic")
            elif escapes.search(a.text):
                self.unknown(f"{name} commands in its arguments can run shell commands (a shell escape)",
                             "runs_code")
        if fam == "sqlite3":
            operands = [a for a in args if not (a.text or "-").startswith("-")]
            if len(operands) < 2:
                self.unknown("sqlite3 reads its commands (which include .shell) from its input", "stdin_code")
            for a in operands[:1]:
                self.add_arg_paths(a, cwds)
            return
        parsed = parse_options([a.text for a in args], spec_, name)
        if parsed.problem:
            self.unknown(parsed.problem, "options")
            return
        if not any(o in code_options for o, _ in parsed.options):
            self.unknown(f"{name} reads its commands (which include shell escapes) from its input", "stdin_code")
        for o, v in parsed.options:
            if o in ("-f", "--file", "--defaults-file", "--defaults-extra-file"):
                if _stdin_like(v):
                    self.unknown(f"{name} {o} reads commands from its input or a computed file", "stdin_code")
                else:
                    self.add_path(_lit(v or ""), cwds)

    # -- wrappers -------------------------------------------------------------------------------------------
    def wrapper(self, name: str, args: list[Arg], spec_: OptionSpec, before: int,
                cwds: list[str] | None) -> None:
        parsed = parse_options([a.text for a in args], spec_, name)
        if parsed.problem:
            self.unknown(parsed.problem, "options")
            for a in args:
                self.add_arg_paths(a, cwds)
            return
        ops = parsed.operands
        for k in ops[:before]:
            if name in ("chroot", "flock", "with-lock-ex", "lckdo", "envdir", "setuidgid"):
                self.add_arg_paths(args[k], cwds)
            elif args[k].text is None:
                self.unknown(f"an operand of {name} is computed when the line runs", "dynamic")
        for o, v in parsed.options:
            if o in ("-o", "--output") and v and name == "time":
                self.add_path(_lit(v), cwds)
            if o in ("-D", "--chdir", "--working-directory") and v:
                cwds = self.chdir(cwds, v)
        rest = [args[k] for k in ops[before:]]
        if name == "chroot" and rest and ops[:1] and args[ops[0]].text not in ("/",):
            self.unknown("chroot runs the command under another root directory, so its paths are not the "
                         "target's", "chroot")
        if not rest:
            self.terminal(name)
            return
        self.run_words(rest, cwds, name)

    def runner(self, name: str, args: list[Arg], cwds: list[str] | None) -> None:
        """``uv run CMD``, ``perf stat CMD``, ``bundle exec CMD``: a subcommand runs the program after it.
        Options of these tools are many; any before the program makes the line unknown."""
        self.terminal(name)
        texts = [a.text for a in args]
        subs = P.RUNNER_SUBCOMMANDS[name]
        k = next((i for i, t in enumerate(texts) if t is None or not t.startswith("-")), len(texts))
        if k < len(texts) and texts[k] in subs:
            rest = args[k + 1:]
            if name == "direnv" and rest:
                rest = rest[1:]  # direnv exec DIR CMD
            if rest and (rest[0].text or "-").startswith("-") and rest[0].text != "--":
                self.unknown(f"{name} {texts[k]} options gw does not read", "options")
                return
            if rest and rest[0].text == "--":
                rest = rest[1:]
            self.run_words(rest, cwds, f"{name} {texts[k]}")
            return
        if k < len(texts) and texts[k] is None:
            self.unknown(f"the {name} subcommand is computed when the line runs", "dynamic")
        self.operands(name, args, cwds)

    def chdir(self, cwds: list[str] | None, directory: str) -> list[str]:
        base = cwds if cwds is not None else self.state.cwds
        out = []
        for c in base:
            out.append(paths.join(c, paths.escape(directory)))
        return out

    # -- arithmetic -----------------------------------------------------------------------------------------
    def arith(self, node: Any) -> None:
        """An arithmetic context: bash evaluates variable values in it as expressions, and a value such as
        ``a[$(cmd)]`` runs ``cmd``.  Only numbers, operators and variables this line sets to numbers are
        read; anything else is ``unknown``."""
        for d in _descendants(node):
            t = d.type
            if t in ("command_substitution", "process_substitution"):
                self.unknown("arithmetic on the output of a command evaluates it as an expression, which can "
                             "run commands", "arithmetic")
                self.visit(d)
            elif t in ("simple_expansion", "expansion"):
                name = next((c for c in d.named_children if c.type in ("variable_name",
                                                                       "special_variable_name")), None)
                text = self.text(name) if name is not None else ""
                simple = self.text(d) in (f"${text}", f"${{{text}}}")
                if not (name is not None and simple and self.numeric(text, d.start_byte)):
                    self.arith_unknown(self.text(d))
            elif t == "variable_name":
                parent = d.parent
                if parent is not None and parent.type in ("simple_expansion", "expansion"):
                    continue
                name = self.text(d)
                if self.assigns(d):
                    self.state.assign(name, [], d.start_byte, numeric=True)
                elif not self.numeric(name, d.start_byte):
                    self.arith_unknown(name)
            elif t == "word":
                text = self.text(d)
                if self.assigns(d):
                    self.state.assign(text, [], d.start_byte, numeric=True)
                    continue
                for ident in _IDENTIFIER.findall(_ARITH_NUMBER.sub(" ", text)):
                    if not self.numeric(ident, d.start_byte):
                        self.arith_unknown(ident)
            elif t in ("string", "raw_string", "ansi_c_string", "concatenation"):
                arg = self.arg(d)
                if arg.text is None or _IDENTIFIER.search(_ARITH_NUMBER.sub(" ", arg.text)):
                    self.arith_unknown(self.text(d))
            elif t == "variable_assignment":
                target = d.child_by_field_name("name")
                if target is not None and target.type == "variable_name":
                    self.state.assign(self.text(target), [], d.start_byte, numeric=True)

    def assigns(self, node: Any) -> bool:
        """``node`` is the target of an arithmetic assignment (``x = ...``, ``x++``, ``--x``)."""
        parent = node.parent
        if parent is None:
            return False
        if parent.type in ("postfix_expression", "unary_expression"):
            return any(c.type in ("++", "--") for c in parent.children)
        if parent.type == "binary_expression" and parent.named_children and parent.named_children[0] == node:
            op = next((c.type for c in parent.children if not c.is_named), "")
            return op.endswith("=") and op not in ("==", "!=", "<=", ">=")
        return False

    def arith_unknown(self, what: str) -> None:
        self.unknown(f"arithmetic on {what}: bash evaluates a variable's value as an expression there, and a "
                     "value can run commands; gw reads only numbers and variables this line sets to numbers",
                     "arithmetic")

    def numeric(self, name: str, offset: int) -> bool:
        if name in _NUMERIC_SPECIAL:
            return True
        var = self.state.vars.get(name)
        return var is not None and var.numeric and not var.unknown and var.first <= offset

    # -- word evaluation ------------------------------------------------------------------------------------
    def arg(self, node: Any) -> Arg:
        return Arg.of(self.eval(node))

    def eval(self, node: Any, *, quoted: bool = False, assignment: bool = False) -> Alts:
        """The values a word node may take (alternatives, each a tuple of fields)."""
        t = node.type
        if t == "word":
            text = self.text(node)
            if any(c.isspace() for c in _unescaped(text)):
                # bash ends an unquoted word at whitespace: the grammar misread the line
                self.unknown("gw cannot read this line as shell syntax (a word the shell grammar read across "
                             "whitespace)", "unparsed")
                return list(_ONE_UNKNOWN)
            return self.eval_word_text(text, quoted=quoted, at_start=True, assignment=assignment)
        if t == "number":
            return [(_lit(self.text(node)),)]
        if t == "raw_string":
            return [(_lit(self.text(node)[1:-1]),)]
        if t == "ansi_c_string":
            return [(_lit(_ansi_c(self.text(node)[2:-1])),)]
        if t in ("string", "translated_string"):
            inner = node
            if t == "translated_string":
                inner = next((c for c in node.named_children if c.type == "string"), None)
                if inner is None:
                    return list(_ONE_UNKNOWN)
            out: Alts = [(_lit(""),)]
            for part in inner.children:
                if not part.is_named:
                    if part.type not in ('"',):
                        out = _concat(out, [(_lit(self.text(part)),)])
                    continue
                if part.type == "string_content":
                    out = _concat(out, [(_lit(_dq_unescape(self.text(part))),)])
                else:
                    out = _concat(out, self.eval(part, quoted=True))
            return out
        if t == "concatenation":
            if self.braces(node):
                return [(Field(self.brace_pattern(node), None),)]
            out = [()]
            for i, part in enumerate(node.named_children):
                if part.type == "word":
                    if any(c.isspace() for c in _unescaped(self.text(part))):
                        return self.eval(part)
                    out = _concat(out, self.eval_word_text(self.text(part), quoted=quoted, at_start=i == 0,
                                                           assignment=assignment))
                else:
                    out = _concat(out, self.eval(part, quoted=quoted, assignment=assignment))
            # text between named children (unnamed tokens inside a concatenation) is literal
            return out
        if t == "simple_expansion":
            name = self.text(node)[1:]
            return self.expand(name, node.start_byte, quoted)
        if t == "expansion":
            text = self.text(node)
            m = re.match(r"^\$\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[#?$!@*-])\}$", text)
            if m:
                return self.expand(m.group(1), node.start_byte, quoted)
            return [(UNKNOWN,)] if quoted else list(_ONE_UNKNOWN)
        if t in ("command_substitution", "process_substitution", "arithmetic_expansion", "brace_expression"):
            return list(_ONE_UNKNOWN)
        if t == "array":
            out2: Alts = []
            for element in node.named_children:
                out2.extend(self.eval(element))
            return out2 or [()]
        if t == "string_content":
            return [(_lit(_dq_unescape(self.text(node))),)]
        return list(_ONE_UNKNOWN)

    def braces(self, node: Any) -> bool:
        """An unquoted ``{a,b}`` / ``{1..3}`` (brace expansion) in a concatenation."""
        depth = 0
        found = False
        for part in node.named_children:
            if part.type != "word":
                continue
            text = _unescaped(self.text(part))
            for c in text:
                if c == "{":
                    depth += 1
                elif c == "}" and depth:
                    depth -= 1
                elif depth and c == ",":
                    found = True
            if depth and ".." in text:
                found = True
        return found

    def brace_pattern(self, node: Any) -> str:
        """Brace expansion as one glob: what precedes the first ``{``, ``*``, what follows the last ``}``
        (each only when it is plain text; otherwise ``*`` as well)."""
        parts = node.named_children
        head, tail = "", ""
        for part in parts:
            text = self.text(part) if part.type == "word" else None
            if text is not None and "{" in _unescaped(text):
                head += paths.escape(text[:_unescaped(text).index("{")].replace("\\", ""))
                break
            values = self.eval(part)
            if text is None or len(values) != 1 or len(values[0]) != 1 or values[0][0].literal is None:
                head = "*"
                break
            head += values[0][0].pattern
        for part in reversed(parts):
            text = self.text(part) if part.type == "word" else None
            if text is not None and "}" in _unescaped(text):
                cut = _unescaped(text).rindex("}")
                tail = paths.escape(text[cut + 1:].replace("\\", "")) + tail
                break
            values = self.eval(part)
            if text is None or len(values) != 1 or len(values[0]) != 1 or values[0][0].literal is None:
                tail = "*"
                break
            tail = values[0][0].pattern + tail
        return head + "*" + tail

    def eval_word_text(self, text: str, *, quoted: bool, at_start: bool, assignment: bool = False) -> Alts:
        """Unquoted word text: backslash escapes, tilde expansion, pathname-expansion characters."""
        if not text:
            return [(_lit(""),)]
        if quoted:
            return [(_lit(text),)]
        prefix: Field | None = None
        if at_start and text.startswith("~"):
            end = text.find("/")
            user = text[1:] if end < 0 else text[1:end]
            home = self.tilde(user)
            if home is not None:
                prefix = home
                text = "" if end < 0 else text[end:]
        if assignment and ":~" in text:
            return [(UNKNOWN,)]
        pattern: list[str] = []
        literal: list[str] | None = []
        i = 0
        brace = False
        while i < len(text):
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                pattern.append(paths.escape(nxt))
                if literal is not None:
                    literal.append(nxt)
                i += 2
                continue
            if c in "*?[" and not assignment:
                pattern.append(c)
                literal = None
            elif c in "{}" and not assignment:
                brace = True
                pattern.append(c)
                if literal is not None:
                    literal.append(c)
            else:
                pattern.append(paths.escape(c))
                if literal is not None:
                    literal.append(c)
            i += 1
        f = Field("".join(pattern), "".join(literal) if literal is not None else None)
        if brace and f.literal is not None and re.search(r"\{[^{}]*(,|\.\.)[^{}]*\}", _unescaped(text)):
            f = Field(self.brace_glob(text), None)
        if prefix is not None:
            f = _join(prefix, f)
        return [(f,)]

    def brace_glob(self, text: str) -> str:
        start, end = text.find("{"), text.rfind("}")
        return paths.escape(text[:start]) + "*" + paths.escape(text[end + 1:])

    def tilde(self, user: str) -> Field | None:
        ctx = self.ctx
        if user == "" or (ctx.user is not None and user == ctx.user):
            return _lit(ctx.home) if ctx.home else UNKNOWN
        if user == "+":
            cwds = self.state.cwds
            return _lit(cwds[0]) if len(cwds) == 1 and paths.is_exact(cwds[0]) else UNKNOWN
        if user == "-":
            return UNKNOWN
        if user == "root":
            return _lit("/root")
        if _NAME.match(user.replace("-", "_").replace(".", "_")):
            return UNKNOWN  # another account's home directory
        return None  # not a tilde prefix (~/ handled above; "~a:b" is literal)

    def expand(self, name: str, offset: int, quoted: bool) -> Alts:
        """``$name``: the values this line gives it, or any value."""
        values: list[Field]
        if name in ("HOME",) and self.ctx.home and name not in self.state.vars:
            values = [_lit(self.ctx.home)]
        elif name == "PWD" and name not in self.state.vars:
            values = [Field(c, paths.unescape(c)) for c in self.state.cwds]
        elif name in ("USER", "LOGNAME") and self.ctx.user and name not in self.state.vars:
            values = [_lit(self.ctx.user)]
        else:
            var = self.state.vars.get(name)
            if var is None or var.unknown:
                values = [UNKNOWN]
            else:
                values = list(var.fields)
                if offset < var.first:
                    values.append(UNKNOWN)
        out: Alts = []
        for v in values:
            if quoted:
                out.append((v,))
                continue
            if self.state.ifs:
                out.append((UNKNOWN,))
                continue
            # Unquoted: the value is split at whitespace and each field is a glob.
            pieces = v.pattern.split()
            if v.literal is not None:
                out.append(tuple(_glob(p) for p in v.literal.split()))
            else:
                out.append(tuple(Field(p, None) for p in pieces))
        return out or [()]


def _descendants(node: Any) -> list[Any]:
    out = [node]
    i = 0
    while i < len(out):
        out.extend(out[i].children)
        i += 1
    return out


def _python_options(words: list[str | None]) -> int:
    """python's ``-c CODE`` and ``-m MODULE`` end its options: the index after them (what follows belongs to
    the program), or the number of words."""
    for i, w in enumerate(words):
        if w is None or w == "--" or not w.startswith("-") or w == "-":
            return len(words)
        for j, c in enumerate(w[1:], start=1):
            if c in "cm":
                return min(len(words), i + 1 if j + 1 < len(w) else i + 2)
            if c in "WXQ":
                break
    return len(words)


def _stdin_like(text: str | None) -> bool:
    """A file name that is the process's input, a descriptor, or computed: a program reading its program or
    script from it reads code gw does not see."""
    return text is None or text in _STDIN_PATHS or text.startswith(("/dev/fd/", "/proc/"))


def _safe_module(fam: str, option: str, value: str | None) -> bool:
    """``perl -Mstrict`` loads a module by name; ``-M'x;system(...)'`` is code."""
    if fam == "perl" and option in ("-M", "-m") and value:
        return bool(re.match(r"^-?[A-Za-z_][A-Za-z0-9_:]*(=[A-Za-z0-9_,:]*)?$", value))
    return False


def _unescaped(text: str) -> str:
    """Word text with escaped characters blanked (``\\{`` is not a brace)."""
    return re.sub(r"\\.", "__", text)


def _dq_unescape(text: str) -> str:
    """Inside double quotes a backslash escapes only ``$``, backquote, ``"``, backslash and newline."""
    return re.sub(r'\\([$`"\\\n])', lambda m: "" if m.group(1) == "\n" else m.group(1), text)


_ANSI = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
         "\\": "\\", "'": "'", '"': '"', "?": "?"}


def _ansi_c(body: str) -> str:
    """Decode the body of ``$'...'`` as bash does."""
    out: list[str] = []
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c != "\\" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        i += 2
        if e in _ANSI:
            out.append(_ANSI[e])
        elif e in "01234567":
            j = i - 1
            while j < n and j < i + 2 and body[j] in "01234567":
                j += 1
            out.append(chr(int(body[i - 1:j], 8) & 0xFF))
            i = j
        elif e == "x":
            m = re.match(r"[0-9A-Fa-f]{1,2}", body[i:])
            if m:
                out.append(chr(int(m.group(), 16)))
                i += m.end()
            else:
                out.append("\\x")
        elif e in "uU":
            m = re.match(r"[0-9A-Fa-f]{1,4}" if e == "u" else r"[0-9A-Fa-f]{1,8}", body[i:])
            if m:
                try:
                    out.append(chr(int(m.group(), 16)))
                except ValueError:
                    out.append("\ufffd")
                i += m.end()
            else:
                out.append("\\" + e)
        elif e == "c" and i < n:
            out.append(chr(ord(body[i]) & 0x1F))
            i += 1
        else:
            out.append("\\" + e)
    return "".join(out)


#: Expansions: in a program name they make the program something computed when the line runs.
_EXPANSIONS = frozenset({"simple_expansion", "expansion", "command_substitution", "process_substitution",
                         "arithmetic_expansion", "brace_expression"})

_CONTAINERS = frozenset({
    "list", "pipeline", "if_statement", "elif_clause", "else_clause", "while_statement", "do_group",
    "case_statement", "case_item", "negated_command", "comment", "concatenation", "string", "translated_string",
    "simple_expansion", "word", "number", "raw_string", "ansi_c_string", "string_content", "brace_expression",
    "array", "heredoc_body", "heredoc_content", "heredoc_start", "heredoc_end", "variable_name",
    "special_variable_name", "binary_expression", "unary_expression", "ternary_expression",
    "parenthesized_expression", "postfix_expression", "test_operator", "regex", "extglob_pattern",
    "file_descriptor", "process_substitution", "command_name", "subscript",
})

_VISITORS = {
    "program": _Walk.v_program,
    "subshell": _Walk.v_subshell,
    "command_substitution": _Walk.v_command_substitution,
    "process_substitution": _Walk.v_command_substitution,
    "function_definition": _Walk.v_function_definition,
    "redirected_statement": _Walk.v_redirected_statement,
    "file_redirect": _Walk.v_file_redirect,
    "heredoc_redirect": _Walk.v_heredoc_redirect,
    "herestring_redirect": _Walk.v_herestring_redirect,
    "for_statement": _Walk.v_for_statement,
    "c_style_for_statement": _Walk.v_c_style_for_statement,
    "compound_statement": _Walk.v_compound_statement,
    "test_command": _Walk.v_test_command,
    "declaration_command": _Walk.v_declaration_command,
    "unset_command": _Walk.v_unset_command,
    "variable_assignment": _Walk.v_variable_assignment,
    "variable_assignments": _Walk.v_variable_assignments,
    "arithmetic_expansion": _Walk.v_arithmetic_expansion,
    "expansion": _Walk.v_expansion,
    "command": _Walk.v_command,
}


# ---------------------------------------------------------------------------------------------------------------
# Program-specific rules (wrappers with their own syntax, programs with code options)
# ---------------------------------------------------------------------------------------------------------------


def _env(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    parsed = parse_options([a.text for a in args], P.ENV_OPTIONS, name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        for a in args:
            w.add_arg_paths(a, cwds)
        return
    rest = [args[k] for k in parsed.operands]
    if rest and rest[0].text == "-":
        rest = rest[1:]  # env - (the same as -i)
    for option, value in parsed.options:
        if option in ("-C", "--chdir") and value is not None:
            cwds = w.chdir(cwds, value)
        if option in ("-S", "--split-string") and value is not None:
            words = _split_string(value)
            if words is None:
                w.unknown("env -S splits a string gw cannot read into words (variables, escapes)", "dynamic")
                return
            rest = [Arg.literal(x) for x in words] + rest
    while rest and rest[0].text is not None and "=" in rest[0].text and \
            _NAME.match(rest[0].text.split("=", 1)[0]):
        var = rest[0].text.split("=", 1)[0]
        if P.dangerous_environment(var):
            w.unknown(f"env {var}=... changes which program runs or what it loads", "environment")
        w.flags.add("env_assignment")
        rest = rest[1:]
    if rest and rest[0].text is None:
        w.unknown("the program env runs is computed when the line runs", "dynamic_program")
        return
    if not rest:
        w.terminal(name)
        return
    w.run_words(rest, cwds, name)


def _split_string(text: str) -> list[str] | None:
    """``env -S`` splits its argument into words with its own small quoting syntax; gw reads it with the
    shell grammar when it holds nothing but plain words, quotes and escapes."""
    if "$" in text or "\\c" in text or "\\_" in text or "#" in text:
        return None
    root, source = parse(text.encode("utf-8", "surrogateescape"))
    if root.has_error or len(root.named_children) != 1 or root.named_children[0].type != "command":
        return None
    command = root.named_children[0]
    out = []
    probe = _Walk(source, ShellContext(), _State(["*"]), MAX_DEPTH)
    for child in command.named_children:
        if child.type == "command_name":
            child = child.named_children[0]
        elif child.type not in ("word", "string", "raw_string", "concatenation", "number"):
            return None
        arg = probe.arg(child)
        if arg.text is None:
            return None
        out.append(arg.text)
    return out


def _sudo(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    parsed = parse_options([a.text for a in args], P.SUDO_OPTIONS, name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        for a in args:
            w.add_arg_paths(a, cwds)
        return
    shell = [o for o, _ in parsed.options if o in P.SUDO_SHELL]
    if shell:
        w.terminal(name)
        w.unknown(f"sudo {shell[0]} runs a shell or an editor, whose commands gw does not see; run the command "
                  "as sudo COMMAND", "runs_code")
        w.interactive.append(f"sudo {shell[0]} (a shell or an editor)")
        for k in parsed.operands:
            w.add_arg_paths(args[k], cwds)
        return
    for option, value in parsed.options:
        if option in ("-D", "--chdir") and value is not None:
            cwds = w.chdir(cwds, value)
        if option in ("-R", "--chroot"):
            w.unknown("sudo --chroot runs the command under another root directory", "chroot")
        if option in ("-l", "--list", "-v", "--validate", "-k", "-K", "-V", "--help", "--version"):
            pass
    rest = [args[k] for k in parsed.operands]
    while rest and rest[0].text is not None and "=" in rest[0].text and \
            _NAME.match(rest[0].text.split("=", 1)[0]):
        var = rest[0].text.split("=", 1)[0]
        if P.dangerous_environment(var):
            w.unknown(f"sudo {var}=... changes which program runs or what it loads", "environment")
        rest = rest[1:]
    if not rest:
        w.terminal(name)
        return
    w.run_words(rest, cwds, name)


def _doas(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    parsed = parse_options([a.text for a in args], P.WRAPPERS["doas"][0], name)
    if parsed.problem or parsed.has("-s") or not parsed.operands:
        w.terminal(name)
        if parsed.problem:
            w.unknown(parsed.problem, "options")
        elif parsed.has("-s") or not parsed.has("-C"):
            w.unknown("doas without a command (or -s) runs a shell", "runs_code")
            w.interactive.append("doas -s (a shell)")
        return
    w.run_words([args[k] for k in parsed.operands], cwds, name)


def _su(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    if name == "runuser" and any(a.text in ("-u", "--user") or (a.text or "").startswith("--user=")
                                 for a in args):
        w.wrapper(name, args, P.WRAPPERS["runuser"][0], 0, cwds)
        return
    w.terminal(name)
    su_spec = OptionSpec(P.SU_OPTIONS.short, P.SU_OPTIONS.short_arg, "", P.SU_OPTIONS.long,
                         P.SU_OPTIONS.long_arg, frozenset(), permute=True)
    parsed = parse_options([a.text for a in args], su_spec, name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        return
    shells = [v for o, v in parsed.options if o in ("-s", "--shell")]
    if shells and P.family(posixpath.basename(shells[-1] or "")) not in _SH_FAMILY:
        w.unknown(f"{name} --shell {shells[-1]} runs its command with a program gw does not read", "runs_code")
        return
    codes = [v for o, v in parsed.options if o in ("-c", "--command", "--session-command")]
    operands = [args[k] for k in parsed.operands]
    if operands and operands[0].text == "-":
        operands = operands[1:]
    extra = operands[1:]
    if codes:
        for code in codes:
            if code is None:
                w.unknown(f"the command given to {name} -c is computed when the line runs", "runs_code")
            else:
                w.nested(code, cwds, f"{name} -c")
        if extra:
            w.unknown(f"arguments after the user are passed to {name}'s shell", "runs_code")
        return
    w.unknown(f"{name} without -c starts a shell, whose commands gw does not see; use {name} -c 'COMMAND'",
              "runs_code")
    w.interactive.append(f"{name} (a shell)")


def _xargs(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    parsed = parse_options([a.text for a in args], P.XARGS_OPTIONS, name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        for a in args:
            w.add_arg_paths(a, cwds)
        return
    replace: str | None = None
    for option, value in parsed.options:
        if option in ("-I",):
            replace = value
        elif option in ("-i", "--replace"):
            replace = value or "{}"
        elif option in ("-a", "--arg-file") and value:
            w.add_path(_lit(value), cwds)
    rest = [args[k] for k in parsed.operands]
    if not rest:
        rest = [Arg.literal("echo")]
    if replace:
        token = paths.escape(replace)
        replaced = []
        for a in rest:
            if a.text is not None and replace in a.text:
                replaced.append(Arg((Field(paths.escape(a.text).replace(token, "*"), None),), None))
            else:
                replaced.append(a)
        rest = replaced
    else:
        rest = rest + [UNKNOWN_ARG]  # the items read from stdin
    w.run_words(rest, cwds, name)


def _find(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    parsed = parse_options([a.text for a in args], P.FIND_PREFIX, name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        return
    rest = [args[k] for k in parsed.operands]
    roots: list[Arg] = []
    while rest and not (rest[0].text is not None and (rest[0].text.startswith("-") or rest[0].text in
                                                      ("(", "!", ")", ","))):
        roots.append(rest.pop(0))
    if not roots:
        roots = [Arg.literal(".")]
    found: list[Field] = []
    for r in roots:
        w.add_arg_paths(r, cwds)
        for f in r.fields:
            base = f.pattern if f.pattern.startswith(("/", "*")) else None
            if base is None:
                for c in cwds if cwds is not None else w.state.cwds:
                    found.append(Field(paths.join(c, f.pattern).rstrip("/") + "/*", None))
            else:
                found.append(Field(paths.normalise(base).rstrip("/") + "/*", None))
    placeholder = Arg(tuple(found) or (UNKNOWN,), None)
    i = 0
    while i < len(rest):
        t = rest[i].text
        if t is None:
            i += 1
            continue
        if t in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            command: list[Arg] = []
            while j < len(rest) and rest[j].text not in (";", "+"):
                a = rest[j]
                if a.text is not None and "{}" in a.text:
                    a = placeholder if a.text == "{}" else Arg(tuple(
                        Field(paths.escape(a.text).replace("{}", "*"), None) for _ in (0,)), None)
                command.append(a)
                j += 1
            if j >= len(rest):
                w.unknown(f"find {t} without its terminating ';' or '+'", "unparsed")
                return
            if command and command[0].text is not None and \
                    P.family(posixpath.basename(command[0].text)) in P.SHELLS:
                w.unknown(f"find {t} runs a shell", "runs_code")
            inner_cwds = ["*"] if t in ("-execdir", "-okdir") else cwds
            w.run_words(command, inner_cwds, f"find {t}")
            i = j + 1
            continue
        if t in ("-fprint", "-fprint0", "-fls", "-fprintf") and i + 1 < len(rest):
            w.add_arg_paths(rest[i + 1], cwds)
            i += 2
            continue
        if t == "-files0-from":
            w.add_path(UNKNOWN)
        if t == "-delete":
            w.verbs.append("rm")  # find -delete removes what it finds: a rule on rm covers it
            for f in found:
                w.objects.append(f.pattern)
        i += 1


def _watch(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    parsed = parse_options([a.text for a in args], P.WATCH_OPTIONS, name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        return
    rest = [args[k] for k in parsed.operands]
    if not rest:
        w.terminal(name)
        return
    if parsed.has("-x", "--exec"):
        w.run_words(rest, cwds, name)
        return
    if any(a.text is None for a in rest):
        w.unknown("watch runs its arguments as shell code, and some are computed when the line runs",
                  "runs_code")
        return
    w.nested(" ".join(a.text or "" for a in rest), cwds, "watch")


def _flock(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    spec_ = P.FLOCK_OPTIONS
    parsed = parse_options([a.text for a in args], spec_, name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        return
    ops = [args[k] for k in parsed.operands]
    if ops:
        w.add_arg_paths(ops[0], cwds)
    # flock FILE -c COMMAND: options may follow the lock file
    after = parse_options([a.text for a in ops[1:]], spec_, name) if len(ops) > 1 else Parsed()
    codes = [v for o, v in parsed.options + after.options if o in ("-c", "--command")]
    if after.problem:
        w.unknown(after.problem, "options")
        return
    if codes:
        for code in codes:
            if code is None:
                w.unknown("the command given to flock -c is computed when the line runs", "runs_code")
            else:
                w.nested(code, cwds, "flock -c")
        return
    rest = [ops[1:][k] for k in after.operands] if len(ops) > 1 else []
    if not rest:
        w.terminal(name)
        return
    w.run_words(rest, cwds, name)


def _sched(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    spec_ = P.CHRT_OPTIONS if name == "chrt" else P.TASKSET_OPTIONS
    parsed = parse_options([a.text for a in args], spec_, name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        return
    if parsed.has("-p", "--pid", "-m", "--max"):
        w.terminal(name)
        return
    ops = [args[k] for k in parsed.operands]
    if len(ops) < 2:
        w.terminal(name)
        return
    w.run_words(ops[1:], cwds, name)


def _exec(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    spec_ = P.WRAPPERS[name][0] if name in P.WRAPPERS else _TIME_KEYWORD
    parsed = parse_options([a.text for a in args], spec_, name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        return
    rest = [args[k] for k in parsed.operands]
    if name == "command" and parsed.has("-v", "-V"):
        w.terminal(name)
        return
    if name == "coproc" and (len(rest) > 1 and rest[1].text in ("{", "(") or rest and rest[0].text in ("{", "(")):
        w.unknown("coproc of a compound command, which gw's shell grammar does not read", "unparsed")
        return
    if not rest:
        w.terminal(name)
        return
    w.run_words(rest, cwds, name)


def _time(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.wrapper(name, args, P.WRAPPERS["time"][0], 0, cwds)


def _busybox(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    if not args or (args[0].text or "").startswith("-"):
        w.terminal(name)
        return
    w.run_words(args, cwds, name)


def _ip(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    texts = [a.text for a in args]
    for i, t in enumerate(texts):
        if t == "exec" and i >= 2 and texts[i - 2] in ("netns", "vrf", "ns"):
            w.run_words(args[i + 1:], cwds, "ip netns exec")
            return
    if any(t is None for t in texts):
        w.unknown("an argument of ip is computed when the line runs", "dynamic")
    w.terminal(name)


def _ssh(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    options = {"ssh": P.SSH_OPTIONS, "scp": P.SCP_OPTIONS, "sftp": P.SFTP_OPTIONS}[name]
    parsed = parse_options([a.text for a in args], options, name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        return
    for option, value in parsed.options:
        if option == "-o" and value is not None:
            key = re.split(r"[\s=]", value.strip(), maxsplit=1)[0].lower()
            if key in P.SSH_COMMAND_OPTIONS:
                w.unknown(f"ssh -o {key} runs a local command", "runs_code")
        if option in ("-F", "-J") and name == "ssh":
            w.unknown(f"ssh {option} can run local commands (ProxyCommand)", "runs_code")
        if option in ("-i", "-F", "-E", "-S") and value:
            w.add_path(_lit(value), cwds)
    ops = [args[k] for k in parsed.operands]
    if name == "ssh" and len(ops) > 1:
        # OpenSSH reads options after the host too, up to the command (or "--")
        after = parse_options([a.text for a in ops[1:]], options, name)
        if after.problem:
            w.unknown(after.problem, "options")
            return
        for option, value in after.options:
            if option == "-o" and value is not None and \
                    re.split(r"[\s=]", value.strip(), maxsplit=1)[0].lower() in P.SSH_COMMAND_OPTIONS:
                w.unknown(f"ssh -o {value} runs a local command", "runs_code")
            if option in ("-F", "-J"):
                w.unknown(f"ssh {option} can run local commands (ProxyCommand)", "runs_code")
        ops = [ops[0], *(ops[1:][k] for k in after.operands)]
    if name in ("scp", "sftp"):
        for option, _value in parsed.options:
            if option == "-S":
                w.unknown(f"{name} -S runs another program as ssh", "runs_code")
        for a in ops:
            for f in a.fields:
                host, colon, _ = f.pattern.partition(":")
                if colon and "/" not in host:
                    continue  # a remote path: on another host
                w.add_path(f, cwds)
        if name == "sftp":
            w.interactive.append("sftp (an interactive client)")
            if not parsed.has("-b"):
                w.unknown("sftp reads its commands (which include !command) from its input", "stdin_code")
        return
    if len(ops) < 2:
        w.interactive.append("ssh (an interactive login on another host)")
        w.unknown("ssh without a command logs in to another host interactively", "runs_code")
        return
    if any(a.text is None for a in ops[1:]):
        w.unknown("the remote command of ssh is computed when the line runs", "runs_code")
        return
    w.nested(" ".join(a.text or "" for a in ops[1:]), ["*"], "ssh")


def _git(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    parsed = parse_options([a.text for a in args], P.GIT_OPTIONS, name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        return
    for option, value in parsed.options:
        if option in ("-c", "--config-env", "--exec-path") and (option != "--exec-path" or value):
            w.unknown(f"git {option} can set configuration that runs commands (core.pager, aliases, hooks)",
                      "runs_code")
        if option == "-C" and value is not None:
            cwds = w.chdir(cwds, value)
            w.add_path(_lit(value), cwds)
    ops = [args[k] for k in parsed.operands]
    if not ops:
        return
    sub = ops[0].text
    if sub is None:
        w.unknown("the git subcommand is computed when the line runs", "dynamic")
        return
    if sub in P.GIT_CODE_COMMANDS:
        w.unknown(f"git {sub} runs commands given to it or set in configuration", "runs_code")
    code = P.GIT_CODE.get(sub, frozenset())
    for a in ops[1:]:
        t = a.text or ""
        option = t.split("=", 1)[0]
        if option in code or (option[:2] in code and not option.startswith("--")):
            w.unknown(f"git {sub} {option} runs a command", "runs_code")
    if sub == "commit" and not any((a.text or "").startswith(("-m", "--message", "-F", "--file", "-C",
                                                              "--reuse-message", "--no-edit", "--fixup",
                                                              "-c"))
                                   for a in ops[1:]):
        w.interactive.append("git commit without -m (opens an editor)")
    w.operands("git", ops[1:], cwds)


def _tar(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    texts = [a.text for a in args]
    for t in texts:
        if t is not None and P.TAR_CODE.search(t) and t.startswith("--"):
            w.unknown(f"tar {t.split('=')[0]} runs a program", "runs_code")
    if texts and texts[0] is not None and not texts[0].startswith("-") and re.match(r"^[A-Za-z]+$", texts[0]):
        bundle = texts[0]
        if any(c in bundle for c in "IF"):
            w.unknown("tar -I/-F runs a program", "runs_code")
        # old style: option letters with values taken from the following words, in order
        rest = args[1:]
        values = [c for c in bundle if c in "fCbgHKLNTVX"]
        for c in values:
            if rest:
                if c in "fCTX":
                    w.add_arg_paths(rest[0], cwds)
                rest = rest[1:]
        w.operands("tar", rest, cwds)
        return
    for t in texts:
        if t is not None and P.TAR_CODE.search(t):
            w.unknown(f"tar {t.split('=')[0]} runs a program", "runs_code")
    w.operands("tar", args, cwds)


def _rsync(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    server = any(a.text == "--server" for a in args)  # the remote end: its -e carries protocol flags
    for a in args:
        t = a.text or ""
        if not server and re.match(r"^(-[a-zA-Z]*e|--rsh|--rsync-path)", t):
            w.unknown("rsync -e/--rsync-path runs a command", "runs_code")
    remote_free = [a for a in args if not re.match(r"^[^/]*:", a.text or "")]
    w.operands("rsync", remote_free, cwds)


def _pager(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    for a in args:
        t = a.text
        if t is None:
            continue
        if name in ("less", "more", "most") and t.startswith("+") and any(c in t for c in "!|"):
            w.unknown(f"{name} {t} runs a shell command", "runs_code")
        if name == "man" and (t.split("=")[0] in ("-P", "--pager", "-H", "--html", "-B", "--browser") or
                              t.startswith(("-P", "-H"))):
            w.unknown(f"man {t.split('=')[0]} runs another program", "runs_code")
    w.operands(name, args, cwds)


def _awk(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    spec_ = P.ARITY["awk"]
    parsed = parse_options([a.text for a in args], spec_, name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        return
    programs: list[str] = []
    from_file = False
    for option, value in parsed.options:
        if option in ("-f", "--file", "-E", "--exec", "-i", "--include"):
            from_file = True
            if _stdin_like(value):
                w.unknown(f"{name} {option} reads its program from its input or a computed file", "stdin_code")
            else:
                w.add_path(_lit(value or ""), cwds)
        elif option in ("-e", "--source") and value is not None:
            programs.append(value)
        elif option in ("-l", "--load"):
            w.unknown(f"{name} {option} loads a compiled extension", "runs_code")
    ops = [args[k] for k in parsed.operands]
    if not from_file and not programs:
        if not ops:
            w.unknown(f"{name} without a program", "unparsed")
            return
        if ops[0].text is None:
            w.unknown(f"the {name} program is computed when the line runs", "runs_code")
            return
        programs.append(ops[0].text)
        ops = ops[1:]
    for program in programs:
        reasons, files = P.awk_program_problems(program)
        for r in reasons:
            w.unknown(r, "runs_code")
        for f in files:
            w.add_path(_lit(f), cwds)
    for a in ops:
        if a.text is not None and "=" in a.text and _NAME.match(a.text.split("=", 1)[0]):
            continue
        w.add_arg_paths(a, cwds)


def _sed(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    parsed = parse_options([a.text for a in args], P.ARITY["sed"], name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        return
    scripts: list[str] = []
    from_file = False
    for option, value in parsed.options:
        if option in ("-e", "--expression") and value is not None:
            scripts.append(value)
        elif option in ("-f", "--file"):
            from_file = True
            if _stdin_like(value):
                w.unknown("sed -f reads its script (which may run commands) from its input or a computed file",
                          "stdin_code")
            else:
                w.add_path(_lit(value or ""), cwds)
    ops = [args[k] for k in parsed.operands]
    if not scripts and not from_file:
        if not ops:
            return
        if ops[0].text is None:
            w.unknown("the sed script is computed when the line runs", "runs_code")
            return
        scripts.append(ops[0].text)
        ops = ops[1:]
    sandbox = parsed.has("--sandbox")
    for script in scripts:
        reasons, files = P.sed_script_problems(script)
        if not sandbox:
            for r in reasons:
                w.unknown(r, "runs_code")
        for f in files:
            w.add_path(_lit(f), cwds)
    for a in ops:
        w.add_arg_paths(a, cwds)


def _script(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    spec_ = spec(short="aefqkV", short_arg="cTOIBEm", short_opt="t",
                 long="append return flush force quiet", long_arg="command log-io log-in log-out log-timing "
                                                                  "echo logging-format", long_opt="timing")
    parsed = parse_options([a.text for a in args], OptionSpec(spec_.short, spec_.short_arg, spec_.short_opt,
                                                              spec_.long, spec_.long_arg, spec_.long_opt,
                                                              permute=True), name)
    if parsed.problem:
        w.unknown(parsed.problem, "options")
        return
    codes = [v for o, v in parsed.options if o in ("-c", "--command")]
    for k in parsed.operands:
        w.add_arg_paths(args[k], cwds)
    if codes:
        for code in codes:
            if code is not None:
                w.nested(code, cwds, "script -c")
        return
    w.unknown("script without -c starts a shell, whose commands gw does not see", "runs_code")


def _crontab(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    texts = [a.text for a in args]
    if any(t in ("-e",) for t in texts):
        w.unknown("crontab -e opens an editor", "runs_code")
        return
    if any(t in ("-l", "-r", "-i") for t in texts) and not any(t is not None and not t.startswith("-")
                                                                for t in texts if t not in ("-u",)):
        return
    w.unknown("crontab installs commands that run later, which gw does not read", "runs_code")
    for a in args:
        w.add_arg_paths(a, cwds)


def _netcat(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    for a in args:
        t = a.text or ""
        if re.match(r"^(-[a-zA-Z]*[ec]|--exec|--sh-exec|--lua-exec)", t):
            w.unknown(f"{name} {t.split('=')[0]} runs a program", "runs_code")


def _cd(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    ops = [a for a in args if not (a.text or "x").startswith("-") or a.text == "-"]
    if name == "popd" or (ops and ops[0].text == "-"):
        return  # back to a directory the line already had
    if not ops:
        home = w.ctx.home
        w.state.add_cwd(paths.escape(home) if home else "*")
        return
    if "CDPATH" in w.state.vars:
        w.state.add_cwd("*")
    for f in ops[0].fields:
        for c in list(cwds if cwds is not None else w.state.cwds):
            w.state.add_cwd(paths.join(c, f.pattern) if not f.pattern.startswith(("/", "*")) else
                            paths.normalise(f.pattern))


def _ln(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    texts = [a.text or "" for a in args]
    symbolic = any(t == "--symbolic" or (t.startswith("-") and not t.startswith("--") and "s" in t)
                   for t in texts)
    w.operands(name, args, cwds)
    ops = [a for a in args if not (a.text or "x").startswith("-")]
    _copies(w, ops, cwds)
    if not symbolic:
        return
    if len(ops) == 2:
        for target in ops[0].fields:
            for link in ops[1].fields:
                for c in cwds if cwds is not None else w.state.cwds:
                    t = paths.join(c, target.pattern)
                    lk = paths.join(c, link.pattern)
                    w.state.links.setdefault(lk, t)
                    w.state.links.setdefault(lk.rstrip("/") + "/" + posixpath.basename(t.rstrip("/")), t)
    elif ops:
        w.state.links.setdefault("*", "*")


def _copies(w: _Walk, ops: list[Arg], cwds: list[str] | None) -> None:
    """``cp SRC DST`` (and ``install``, ``mv``, ``ln``): a program later run as DST (or DST/NAME) is SRC."""
    if len(ops) < 2:
        return
    for source in ops[:-1]:
        for f in source.fields:
            for c in cwds if cwds is not None else w.state.cwds:
                origin = paths.join(c, f.pattern)
                for target in ops[-1].fields:
                    made = paths.join(c, target.pattern)
                    for key in (made, made.rstrip("/") + "/" + posixpath.basename(origin)):
                        if key not in w.state.copies:
                            w.state.copies[key] = origin
                            w.state.changed = True


def _cp(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    w.operands(name, args, cwds)
    _copies(w, [a for a in args if not (a.text or "x").startswith("-")], cwds)


def _make(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    """make runs the shell recipes of a makefile: one named on the target is a script like any other; one
    read from the input, or ``--eval`` text, is code gw does not read."""
    w.terminal(name)
    texts = [a.text for a in args]
    for i, t in enumerate(texts):
        value = None
        if t in ("-f", "--file", "--makefile") and i + 1 < len(texts):
            value = texts[i + 1]
            if _stdin_like(value):
                w.unknown(f"{name} -f reads a makefile (shell recipes) from its input", "stdin_code")
        elif t is not None and t.startswith(("--eval", "--file=", "--makefile=")):
            if t.startswith("--eval") or _stdin_like(t.split("=", 1)[1]):
                w.unknown(f"{name} {t.split('=')[0]} runs recipes gw does not read", "runs_code")
        elif t is not None and t.startswith("-f") and len(t) > 2 and _stdin_like(t[2:]):
            w.unknown(f"{name} -f reads a makefile (shell recipes) from its input", "stdin_code")
        elif t is not None and "=" in t and t.split("=", 1)[0] in ("SHELL", ".SHELLFLAGS", "MAKESHELL"):
            w.unknown(f"{name} {t.split('=')[0]}= changes the shell its recipes run with", "environment")
    w.operands(name, args, cwds)


def _trap(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    texts = [a.text for a in args]
    if not texts or texts[0] in ("-p", "-l", "-lp", "-pl", "-", "") or (texts[0] or "x").isdigit():
        return
    if texts[0] == "--":
        args = args[1:]
        texts = texts[1:]
    if not texts or texts[0] is None:
        w.unknown("the command given to trap is computed when the line runs", "runs_code")
        return
    w.nested(texts[0], cwds, "trap")


def _names(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    """Builtins that assign to variables named in their arguments (read, printf -v, getopts, wait -p)."""
    w.terminal(name)
    texts = [a.text for a in args]
    targets: list[str | None] = []
    if name == "read":
        i = 0
        while i < len(texts) and (texts[i] or "").startswith("-"):
            if texts[i] in ("-a", "-d", "-i", "-n", "-N", "-p", "-t", "-u"):
                if texts[i] == "-a" and i + 1 < len(texts):
                    targets.append(texts[i + 1])
                i += 2
                continue
            i += 1
        targets.extend(texts[i:] or ["REPLY"])
    elif name == "printf":
        if len(texts) >= 2 and texts[0] == "-v":
            targets.append(texts[1])
    elif name == "getopts" and len(texts) >= 2:
        targets.append(texts[1])
    elif name == "wait":
        for i, t in enumerate(texts):
            if t == "-p" and i + 1 < len(texts):
                targets.append(texts[i + 1])
    for t in targets:
        if t is None or not _NAME.match(t):
            w.unknown(f"{name} assigns to a computed or subscripted name, which bash evaluates and which can run "
                      "commands", "arithmetic")
        else:
            w.state.assign(t, None, 0, numeric=False)
    if name == "printf":
        w.operands("printf", args, cwds)


def _let(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    w.terminal(name)
    for a in args:
        if a.text is None:
            w.arith_unknown("a computed expression")
            continue
        m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*([-+*/%^&|]|<<|>>)?=", a.text)
        expression = a.text
        if m:
            w.state.assign(m.group(1), [], 0, numeric=True)
            expression = a.text[m.end():]
        for ident in _IDENTIFIER.findall(_ARITH_NUMBER.sub(" ", expression)):
            if not w.numeric(ident, 1 << 62):
                w.arith_unknown(ident)


def _sg(w: _Walk, name: str, args: list[Arg], cwds: list[str] | None) -> None:
    """``sg GROUP -c COMMAND`` / ``sg GROUP COMMAND``: the command is shell code."""
    texts = [a.text for a in args]
    rest = args[1:]
    if rest and texts[1] == "-c":
        rest = rest[1:]
    if not rest:
        w.terminal(name)
        w.unknown("sg without a command starts a shell", "runs_code")
        return
    if any(a.text is None for a in rest):
        w.unknown("the command given to sg is computed when the line runs", "runs_code")
        return
    w.nested(" ".join(a.text or "" for a in rest), cwds, "su -c")


_PROGRAMS = {
    "sg": _sg,
    "env": _env,
    "sudo": _sudo,
    "doas": _doas,
    "su": _su,
    "runuser": _su,
    "xargs": _xargs,
    "find": _find,
    "watch": _watch,
    "flock": _flock,
    "chrt": _sched,
    "taskset": _sched,
    "exec": _exec,
    "command": _exec,
    "builtin": _exec,
    "coproc": _exec,
    "time": _time,
    "busybox": _busybox,
    "toybox": _busybox,
    "ip": _ip,
    "ssh": _ssh,
    "scp": _ssh,
    "sftp": _ssh,
    "git": _git,
    "tar": _tar,
    "rsync": _rsync,
    "less": _pager,
    "more": _pager,
    "most": _pager,
    "man": _pager,
    "awk": _awk,
    "gawk": _awk,
    "mawk": _awk,
    "nawk": _awk,
    "sed": _sed,
    "gsed": _sed,
    "script": _script,
    "crontab": _crontab,
    "nc": _netcat,
    "netcat": _netcat,
    "ncat": _netcat,
    "cd": _cd,
    "pushd": _cd,
    "popd": _cd,
    "make": _make,
    "gmake": _make,
    "ln": _ln,
    "cp": _cp,
    "install": _cp,
    "mv": _cp,
    "trap": _trap,
    "read": _names,
    "printf": _names,
    "getopts": _names,
    "wait": _names,
    "let": _let,
}


# ---------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------


def _analyse(source: bytes, ctx: ShellContext, depth: int, cwds: list[str]) -> _Walk:
    root, source = parse(source)
    state = _State(cwds=list(cwds))
    walk = _Walk(source, ctx, state, depth)
    for _ in range(_MAX_ROUNDS):
        state.changed = False
        walk = _Walk(source, ctx, state, depth)
        walk.visit(root)
        if not state.changed:
            break
    else:
        state.add_cwd("*")
        walk = _Walk(source, ctx, state, depth)
        walk.visit(root)
    if state.links:
        walk.objects = _through_links(walk.objects, state.links)
    for program in list(dict.fromkeys(walk.programs)):
        for made, origin in {**state.copies, **state.links}.items():
            if program == made or program.startswith(made.rstrip("/") + "/"):
                alias = posixpath.basename(origin.rstrip("/")) or "*"
                if alias not in walk.verbs:
                    walk.verbs.append(alias)
    return walk


def _through_links(objects: list[str], links: dict[str, str]) -> list[str]:
    """Add, for every object under a symbolic link the line creates, the same path under its target."""
    out = list(objects)
    if "*" in links:
        return out + ["*"]
    for obj in objects:
        for link, target in links.items():
            if obj == link or obj.startswith(link.rstrip("/") + "/"):
                out.append(paths.normalise(target.rstrip("/") + obj[len(link.rstrip("/")):]))
    if any(not paths.is_exact(link) for link in links):
        out.append("*")
    return out


def analyse(text: str, context: ShellContext | None = None) -> Analysis:
    """Analyse one command line (see :class:`~gw_shellanalysis.model.Analysis`)."""
    ctx = context or ShellContext()
    start = paths.escape(ctx.cwd) if ctx.cwd else "*"
    if len(text) > MAX_TEXT:
        return Analysis(Kind.UNKNOWN, "", (), ("*",), frozenset({"too_long"}),
                        (f"the line is longer than {MAX_TEXT} characters, more than gw analyses",))
    if "\x00" in text:
        return Analysis(Kind.UNKNOWN, "", (), ("*",), frozenset({"unparsed"}),
                        ("the line contains a NUL character, which the shell would cut it at",))
    walk = _analyse(text.encode("utf-8", "surrogateescape"), ctx, 0, [start])
    verbs = tuple(walk.verbs)
    verb = walk.primary or (verbs[0] if verbs else "")
    objects = list(dict.fromkeys(o for o in walk.objects if o))
    if len(objects) > MAX_OBJECTS:
        objects = objects[:MAX_OBJECTS - 1] + [paths.common_prefix_glob(objects[MAX_OBJECTS - 1:])]
    kind = Kind.UNKNOWN if walk.reasons else Kind.EXEC
    links = tuple(walk.state.links.items())
    return Analysis(kind, verb, verbs, tuple(objects), frozenset(walk.flags), tuple(walk.reasons),
                    tuple(dict.fromkeys(walk.interactive)), links, tuple(dict.fromkeys(walk.physical)),
                    tuple(dict.fromkeys(walk.programs)))
