"""An imported module parsed without its function bodies; each body is parsed the first time it is read.

A file imported by the checked one is mostly read for its names: which classes it defines and what they extend,
a function's signature, its imports. The analysis enters only the few functions it calls. Parsing the whole
file is most of the cost of importing it (transformers' `modeling_utils.py`: 50 ms, for the handful of methods
a model file reaches), so an imported file is parsed as a skeleton: every function body is blanked out of the
text (lines and columns kept), the rest parsed as usual. A function whose body was blanked is a
`LazyFunctionDef` (an `ast.FunctionDef`): the first read of its `body` parses that function's own lines and
turns the node back into a plain `ast.FunctionDef`.

A class at the top of the file is taken one step further: its whole body is blanked first (its methods' imports
kept), and the `LazyClassDef` finds and blanks its methods and parses its own lines the first time its `body` is
read (a model file reaches a handful of the dozens of classes a package module such as `modeling_outputs.py` or
`unet_2d_blocks.py` defines: the methods of the others are never even looked for). A class whose body the scan
cannot be sure of (a method's docstring with lines at column 0) keeps its body in the skeleton, its methods
blanked one by one with the file's functions.

The skeleton keeps every `import` of a blanked body (the module's name table holds them all). Any doubt about
the text (tabs, carriage returns, a body that seems to end inside a string or a bracket) and the file is parsed
whole, as before: the skeleton is checked against what it should contain before it is used.
"""

from __future__ import annotations

import ast
import bisect
import re
import sys

from gradtrace import parsing

# a function header's first line: indentation, then `def NAME(` (or `[` for type parameters)
# (patterns start at the newline before a line: a literal first character makes the search fast)
_DEF = re.compile(r"\n([ ]*)(?:async[ ]+)?def[ ]+(\w+)[ ]*[(\[]")
# a line that ends a header: a colon, then at most a comment
_HEADER_END = re.compile(r":[ \t]*(?:#[^\n]*)?$", re.M)
# a class statement at the top of the file (column 0; not on the file's first line)
_CLASS = re.compile(r"\nclass[ ]+(\w+)[ ]*[(:\[]")
# an import statement's first line inside a body (after `...; ` in a body the skeleton blanked already, or after
# the header of a one-line block: `if not re: import re`, `except ImportError: from x import y`)
_IMPORT = re.compile(r"\n[ ]+(?:\.\.\.; |(?:if|elif|else|try|except|finally|with|for|while)\b[^\n:]*:[ ]*)?"
                     r"((?:from[ ]+\.*[\w.]*[ ]+import\b|import[ ]+[\w.])[^\n]*)")
_CODE = re.compile(r"\n[ ]*[^ \t\n#]")  # a line of code (not blank, not only a comment)
_CODE_AT: dict[int, re.Pattern] = {}  # indentation -> regex of the next code line indented at most that much
_ODD_INDENT = re.compile(r"\n[ ]*[\t\f]")  # a tab or form feed in an indentation: the file is parsed whole
MAX_HEADER_LINES = 60
MIN_LINES = 200  # smaller files parse whole: the skeleton would not pay for itself


def _code_at_most(indent: int) -> re.Pattern:
    pattern = _CODE_AT.get(indent)
    if pattern is None:
        pattern = _CODE_AT[indent] = re.compile(rf"\n[ ]{{0,{indent}}}[^ \t\n#]")
    return pattern


def _lazy_kind(plain: type, load) -> type:
    """A subclass of `plain` whose `body` is parsed on first read (`load`); the node is then a `plain` again."""

    def read(self):
        return load(self, plain)

    def write(self, value):
        self.__class__ = plain
        self.body = value

    return type(f"Lazy{plain.__name__}", (plain,), {
        "__slots__": (), "__module__": __name__, "body": property(read, write),
        "__doc__": f"An `ast.{plain.__name__}` whose body has not been parsed yet; reading `body` parses it."})


def _load(node, plain: type) -> list:
    return node.__dict__["_region"].load(node, plain)


LazyFunctionDef = _lazy_kind(ast.FunctionDef, _load)
LazyAsyncFunctionDef = _lazy_kind(ast.AsyncFunctionDef, _load)
LazyClassDef = _lazy_kind(ast.ClassDef, _load)
LAZY = (LazyFunctionDef, LazyAsyncFunctionDef)  # the functions whose bodies are not parsed yet
LAZY_KINDS = (*LAZY, LazyClassDef)  # every node kind of a skeleton whose body is not parsed yet
_LAZY_OF = {ast.FunctionDef: LazyFunctionDef, ast.AsyncFunctionDef: LazyAsyncFunctionDef}


class _Region:
    """Where a blanked body's function is in the original text."""

    __slots__ = ("text", "def_line", "start", "body", "end")

    def __init__(self, text: str, def_line: int, start: int, body: int, end: int):
        self.text, self.def_line, self.start, self.body, self.end = text, def_line, start, body, end

    def load(self, node, plain: type) -> list:
        return _load_function(node, plain)


class _ClassRegion:
    """Where a blanked class is: its lines in the original text (with that text's triple-quoted strings), and the
    file's list of nodes still lazy, which the class's methods join when it is parsed. Its methods are found and
    blanked only then: a class no one reads costs no scan of its methods."""

    __slots__ = ("text", "strings", "line", "start", "end", "pending")

    def __init__(self, text: str, strings: list[int], line: int, start: int, end: int, pending: list):
        self.text, self.strings, self.line, self.start, self.end = text, strings, line, start, end
        self.pending = pending

    def load(self, node, plain: type) -> list:
        return _load_class(node, self)


def _load_function(node, plain: type) -> list:
    """Parse the function's own lines and make `node` a plain function definition holding its real body."""
    region: _Region = node.__dict__["_region"]
    parsed = _parse_function(region.text, region.start, region.end, region.def_line)
    if not (isinstance(parsed, plain) and parsed.name == node.name):
        parsed = _from_whole_file(region, node, plain)
    node.__class__ = plain
    node.body = parsed.body if parsed is not None else []
    if parsed is not None:
        node.end_lineno, node.end_col_offset = parsed.end_lineno, parsed.end_col_offset
    node.__dict__["_read_region"] = node.__dict__.pop("_region")  # its text stays searchable (`body_text`)
    return node.body


def _parse_function(text: str, start: int, end: int, def_line: int):
    """The one function whose lines are `text[start:end]` (its `def` on `def_line`), parsed in place: lines and
    columns as in the file. None when those lines are not exactly one function."""
    indented = text[start] == " "
    if indented:  # a method: inside a block that starts on the line above
        source = "\n" * (def_line - 2) + "if 1:\n" + text[start:end]
    else:
        source = "\n" * (def_line - 1) + text[start:end]
    tree = _parse(source)
    if tree is None:
        return None
    block = tree.body[0].body if indented and tree.body else tree.body
    if len(block) != 1 or not isinstance(block[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    return block[0]


def _from_whole_file(region: _Region, node, plain: type):
    """The same function (or class) found in a parse of the whole file (the region was not it after all)."""
    tree = _parse(region.text)
    if tree is None:
        return None
    for candidate in ast.walk(tree):
        if isinstance(candidate, plain) and candidate.lineno == node.lineno and candidate.name == node.name:
            return candidate
    return None


def _load_class(node, region: _ClassRegion) -> list:
    """Parse the class's own lines (its methods' bodies blanked now, each a lazy function) and make `node` a plain
    class definition holding its real body; its methods join the file's lazy functions."""
    cls = methods = None
    blanked = _blank_bodies(region.text, region.strings, region.start, region.end, region.line)
    if blanked is not None:
        segment, functions = blanked
        parsed = _parse(("\n" * (region.line - 1)) + segment)
        cls = parsed.body[0] if parsed is not None and len(parsed.body) == 1 else None
        if type(cls) is ast.ClassDef and cls.name == node.name and cls.lineno == node.lineno:
            methods = _mark_lazy(cls.body, region.text, functions, len(functions))
    if methods is None:  # not the class the scan took it for: its definition in a whole parse
        cls, methods = _from_whole_file(region, node, ast.ClassDef), []
    node.__class__ = ast.ClassDef
    node.body = cls.body if cls is not None else []
    if cls is not None:
        _fix_ends(cls)
        node.end_lineno, node.end_col_offset = cls.end_lineno, cls.end_col_offset
    del node.__dict__["_region"]
    region.pending.extend(methods)  # a completion of the file parses them too
    return node.body


def _function_region(node) -> _Region | None:
    region = node.__dict__.get("_region") or node.__dict__.get("_read_region")
    return region if type(region) is _Region else None


def body_text(node) -> str | None:
    """The text of the body of a function of a lazily parsed file, parsed since or not; None for a function of a
    whole parse."""
    region = _function_region(node)
    return region.text[region.body:region.end] if region is not None else None


def function_text(node) -> str | None:
    """The text of a function of a lazily parsed file from its `def` on (its signature and body, not its
    decorators), parsed since or not; None for a function of a whole parse."""
    region = _function_region(node)
    return region.text[region.start:region.end] if region is not None else None


def unread_body(node) -> str | None:
    """The text of a function's body when it has not been parsed yet (a question a text search can answer
    costs no parse), else None."""
    region = node.__dict__.get("_region") if type(node) in LAZY else None
    return region.text[region.body:region.end] if region is not None else None


def _parse(source: str) -> ast.Module | None:
    """`ast.parse`, as deep as a whole parse may go (`SourceFile.parse`) wherever the analysis happens to read a
    body; None when it does not parse."""
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, 20000))
        return parsing.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    finally:
        sys.setrecursionlimit(limit)


def load_all(nodes: list) -> None:
    """Parse every lazy body of `nodes` (a class parsed adds its methods to the list: they are parsed too)."""
    for node in nodes:
        if isinstance(node, LAZY_KINDS):
            node.body  # noqa: B018 (reading it parses it)


def parse_skeleton(text: str) -> tuple[ast.Module, list] | None:
    """(the tree with function bodies blanked, the lazy function nodes), or None when the file should be
    parsed whole (small, or anything about its text in doubt, or a syntax error: the whole parse reports it)."""
    if text.count("\n") < MIN_LINES or "\r" in text:
        return None
    strings = _string_spans(text)
    if ("\t" in text or "\f" in text) \
            and any(_inside_string(strings, odd.start()) is None for odd in _ODD_INDENT.finditer(text)):
        return None
    # the bodies of the classes at column 0 first (their methods are scanned when the class is read), then the
    # functions left: those at the top, and those of a class the scan could not blank whole
    shell, classes = _blank_classes(text, strings)
    if classes:
        found = _skeleton(shell, _string_spans(shell), classes, text, strings)
        if found is not None:
            return found
    return _skeleton(text, strings, {}, text, strings)


def _skeleton(shell: str, shell_strings: list[int], classes: dict, text: str, strings: list[int]):
    """The skeleton of `text` from `shell` (`text` with the bodies of `classes` blanked): its functions blanked,
    parsed, each blanked node made lazy; None when that does not parse or does not hold what the scan blanked."""
    blanked = _blank_bodies(shell, shell_strings)
    if blanked is None:
        return None
    skeleton, regions = blanked
    if not regions and not classes:
        return None
    try:
        tree = parsing.parse(skeleton)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # a class's end taken for a line of its own, or a syntax error the whole parse reports
    lazy: list = []
    for node in tree.body:
        span = classes.get(node.lineno) if type(node) is ast.ClassDef else None
        if span is not None and node.name == span[0]:
            start, end, last_line, end_column = span[1:]
            node.__class__ = LazyClassDef
            node.__dict__["_region"] = _ClassRegion(text, strings, node.lineno, start, end, lazy)
            node.end_lineno, node.end_col_offset = last_line, end_column
            lazy.append(node)
    functions = _mark_lazy(tree.body, shell, regions, len(regions))
    if functions is None:
        return None
    lazy.extend(functions)
    for statement in tree.body:
        _fix_ends(statement)
    return tree, lazy


def _blank_classes(text: str, strings: list[int]) -> tuple[str, dict]:
    """The text with the body of each class at column 0 blanked (`...`, every import of its methods kept), and
    class line -> (name, start and end offsets of the class in the text, its last line, that line's end column)."""
    out: list[str] = []
    classes: dict[int, tuple] = {}
    copied = 0
    line = 1
    for match in _CLASS.finditer(text):
        start = match.start() + 1
        if start < copied or _inside_string(strings, start) is not None:
            continue
        body = _block_body(text, start, match.end(1), 0, strings)
        if body is None or body[3]:
            continue
        first_start, body_indent, last, _ = body
        class_line = line + text.count("\n", copied, start)
        last_line = class_line + text.count("\n", start, last)
        end_column = _end_column(text[text.rfind("\n", 0, last) + 1:last])
        out.append(text[copied:first_start])
        out.append(_stub(text, first_start, last, body_indent, strings))
        classes[class_line] = (match.group(1), start, last, last_line, end_column)
        copied, line = last, last_line
    out.append(text[copied:])
    return "".join(out), classes


def _string_spans(text: str) -> list[int]:
    """Flat sorted [start, end, start, end, ...] offsets of triple-quoted strings (an approximation: quotes in
    comments and one-line strings are not told apart, which only makes a region look doubtful)."""
    spans: list[int] = []
    find = text.find
    double, single = find('"""'), find("'''")  # the next of each kind (-1: none left)
    while double >= 0 or single >= 0:
        start, quote = (double, '"""') if single < 0 or 0 <= double < single else (single, "'''")
        end = find(quote, start + 3)
        if end < 0:
            spans += (start, len(text))
            break
        end += 3
        spans += (start, end)
        if 0 <= double < end:
            double = find('"""', end)
        if 0 <= single < end:
            single = find("'''", end)
    return spans


def _inside_string(spans: list[int], offset: int) -> int | None:
    """The end of the triple-quoted string `offset` is in, or None."""
    i = bisect.bisect_right(spans, offset)
    return spans[i] if i % 2 == 1 and spans[i - 1] != offset else None


def _blank_bodies(text: str, strings: list[int], begin: int = 0, stop: int | None = None,
                  line: int = 1) -> tuple[str, dict] | None:
    """`text[begin:stop]` (on `line`) with every function body blanked (`...` on its first line, its imports kept),
    and def line -> (name, first and last lines of the body, end column of that line, offsets of the def, of its
    body and of the body's end in `text`); None when a body may not be what the scan takes it for."""
    out: list[str] = []
    regions: dict[int, tuple] = {}
    stop = len(text) if stop is None else stop
    copied = begin  # text[begin:copied] is in `out`
    search = _DEF.search
    position = max(begin - 1, 0)
    while True:
        match = search(text, position, stop)
        if match is None:
            break
        start = match.start() + 1
        position = match.end()
        if _inside_string(strings, match.start(2)) is not None:
            continue
        body = _block_body(text, start, match.end(), len(match.group(1)), strings)
        if body is None:
            continue
        first_start, body_indent, last, doubtful = body
        def_line = line + text.count("\n", copied, start)
        first_line = def_line + text.count("\n", start, first_start)
        end_line = first_line + text.count("\n", first_start, last)
        if doubtful and not _is_one_function(text, start, last, def_line, end_line):
            return None
        end_column = _end_column(text[text.rfind("\n", 0, last) + 1:last])
        out.append(text[copied:first_start])
        out.append(_stub(text, first_start, last, body_indent, strings))
        regions[def_line] = (match.group(2), first_line, end_line, end_column, start, first_start, last)
        copied, line = last, end_line
        position = last
    out.append(text[copied:stop])
    return "".join(out), regions


def _block_body(text: str, start: int, after_name: int, indent: int, strings: list[int]) -> tuple | None:
    """(offset of the first line of the body of the `def` or `class` at `start` indented `indent`, the body's
    indentation, the offset just after its last code, whether a line indented `indent` or less was taken for part
    of a string); None when the scan cannot follow it (a one-line body, a header it cannot read, a body that ends
    with a backslash)."""
    body_start = _header_end(text, start, after_name)
    first = _CODE.search(text, body_start - 1) if body_start is not None else None  # the body's first statement
    if first is None:
        return None
    first_start = first.start() + 1
    body_indent = first.end() - 1 - first_start
    if body_indent <= indent or _inside_string(strings, first.end() - 1) is not None:
        return None
    end, doubtful = _body_end(text, body_start, indent, strings)
    last = _last_code(text, first_start, end)
    if last <= first_start or text[last - 1] == "\\":
        return None
    return first_start, body_indent, last, doubtful


def _header_end(text: str, start: int, after_name: int) -> int | None:
    """Offset just after the newline that ends the header starting at `start`: the first line where its
    brackets close, which must end with a colon. None for a one-line function, or a header this scan cannot
    follow."""
    balance = 0
    line_start = start
    for _ in range(MAX_HEADER_LINES):
        line_end = text.find("\n", line_start)
        if line_end < 0:
            return None
        line = text[line_start:line_end]
        balance += line.count("(") + line.count("[") + line.count("{") \
            - line.count(")") - line.count("]") - line.count("}")
        if balance <= 0:
            match = _HEADER_END.search(text, max(line_start, after_name), line_end)
            return line_end + 1 if balance == 0 and match is not None and match.end() == line_end else None
        line_start = line_end + 1
    return None


def _body_end(text: str, body_start: int, indent: int, strings: list[int]) -> tuple[int, bool]:
    """(offset of the first line after the body: code indented at most `indent`, outside any string; whether a
    line indented that little was taken for part of a string, which the caller must confirm)."""
    pattern = _code_at_most(indent)
    position = body_start - 1
    skipped = False
    while True:
        found = pattern.search(text, position)
        if found is None:
            return len(text), skipped
        inside = _inside_string(strings, found.end() - 1)
        if inside is None:
            return found.start() + 1, skipped
        position, skipped = inside, True


def _is_one_function(text: str, start: int, end: int, def_line: int, end_line: int) -> bool:
    """Do the lines `text[start:end]` hold exactly one function, ending on `end_line`? (Asked only of a body that
    seemed to hold a string with lines indented less than the function.)"""
    node = _parse_function(text, start, end, def_line)
    return node is not None and node.end_lineno == end_line


def _last_code(text: str, start: int, end: int) -> int:
    """Offset just after the last line of `text[start:end]` that is code (not blank, not only a comment)."""
    position = end
    while position > start:
        line_start = text.rfind("\n", start, position - 1) + 1
        if line_start < start:
            line_start = start
        stripped = text[line_start:position].strip()
        if stripped and not stripped.startswith("#"):
            return line_start + len(text[line_start:position].rstrip())
        if line_start == start:
            return start
        position = line_start - 1 if text[line_start - 1] == "\n" else line_start
    return start


def _end_column(line: str) -> int:
    """The UTF-8 end column of a line's code, without a trailing comment (a `#` with an even number of each
    quote before it starts the comment: close enough for the end of a class the real parse corrects)."""
    hash_at = line.find("#")
    while hash_at >= 0:
        before = line[:hash_at].replace('"""', "").replace("'''", "")
        if before.count('"') % 2 == 0 and before.count("'") % 2 == 0:
            line = line[:hash_at].rstrip()
            break
        hash_at = line.find("#", hash_at + 1)
    return len(line.encode("utf-8"))


def _stub(text: str, first_start: int, last: int, body_indent: int, strings: list[int]) -> str:
    """The body's lines blanked: `...` on the first one, each import of the body kept on its own line(s)."""
    if text.find("import", first_start, last) < 0:
        return " " * body_indent + "..." + "\n" * text.count("\n", first_start, last)
    lines = text[first_start:last].split("\n")
    stub = [""] * len(lines)
    stub[0] = " " * body_indent + "..."
    line, counted = 0, first_start  # the line of `counted` in `lines` (counted on from the last import: a class
    # body of thousands of lines with hundreds of imports in its methods is not counted from its start each time)
    for match in _import_lines(text, first_start - 1, last):
        if _inside_string(strings, match.start(1)) is not None:
            continue
        line += text.count("\n", counted, match.start() + 1)
        counted = match.start() + 1
        index = line
        statement = match.group(1).strip()
        stub[index] = stub[index] + "; " + statement if index == 0 else " " * body_indent + statement
        open_brackets = statement.count("(") - statement.count(")")
        continued = statement.endswith("\\")
        while (open_brackets > 0 or continued) and index + 1 < len(lines):
            index += 1
            stub[index] = lines[index]
            open_brackets += lines[index].count("(") - lines[index].count(")")
            continued = lines[index].endswith("\\")
    return "\n".join(stub)


def _import_lines(text: str, begin: int, end: int):
    """What `_IMPORT.finditer(text, begin, end)` finds, looked for only on the lines that hold the word `import`
    (a class body of thousands of lines holds a few dozen)."""
    find, rfind, match = text.find, text.rfind, _IMPORT.match
    position = begin
    while True:
        at = find("import", position, end)
        if at < 0:
            return
        line_start = rfind("\n", begin, at)
        found = match(text, line_start, end) if line_start >= 0 else None
        if found is not None:
            yield found
            position = found.end()
            continue
        position = find("\n", at, end)  # a match starts at a newline: the next one is after this line
        if position < 0:
            return


def _mark_lazy(statements: list, text: str, regions: dict, count: int) -> list | None:
    """Turn each blanked function among `statements` (and the blocks in them, lazy classes aside) into a lazy
    one; None when one is not where it should be, or when they are not `count` functions."""
    found: list = []
    stack = list(statements)
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is ast.FunctionDef or kind is ast.AsyncFunctionDef:
            expected = regions.get(node.lineno)
            if expected is None:
                continue
            name, first_line, end_line, end_column, start, body_start, end = expected
            body = node.__dict__["body"]
            if node.name != name or not isinstance(body[0], ast.Expr) or body[0].lineno != first_line:
                return None
            node.__class__ = _LAZY_OF[kind]
            node.__dict__["_region"] = _Region(text, node.lineno, start, body_start, end)
            node.end_lineno, node.end_col_offset = end_line, end_column
            found.append(node)
        elif kind is ast.ClassDef:
            stack.extend(node.body)
        elif kind is not LazyClassDef:
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, None) or ())
    return found if len(found) == count else None


_BLOCKS = ("body", "handlers", "orelse", "finalbody", "cases")


def _fix_ends(node) -> tuple[int, int] | None:
    """Give each compound statement the end of its last statement, as a whole parse does (a blanked body ends
    elsewhere in the skeleton: earlier, or later when an import kept on its first line is followed by more code);
    returns the node's end."""
    if type(node) not in LAZY_KINDS:
        last_end = None
        for field in _BLOCKS:
            for child in getattr(node, field, None) or ():
                last_end = _fix_ends(child)
        end = getattr(node, "end_lineno", None)
        if end is None:  # a match case has no position of its own
            return last_end
        if last_end is not None:
            node.end_lineno, node.end_col_offset = last_end
    return node.end_lineno, node.end_col_offset
