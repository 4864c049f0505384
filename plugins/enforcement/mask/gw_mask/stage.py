"""The ``mask`` stage: its options and how it hands out row and stream filters.

```toml
{ use = "mask", strategy = "redact", columns = ["ssn", "*.card_number", "customers.email"],
  detectors = ["us_ssn", "credit_card", "email", "iban"] }
```

The stage decides nothing about commands; it only transforms results (``transforms = True``, so its filters
run before observing stages such as ``record``, which therefore store what the agent saw).  Per command it
counts what it masked and reports the counts as ``outcome.notes["masked"]`` on completion.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Annotated, Any, cast

from gw.detect import Detector
from gw.errors import ConfigError, PluginError
from gw.model import RESULT_COLUMNS, Channel, Column, Command, DenyCode, Direction, Outcome, Verdict
from gw.stage import ParamValues, RowFilter, Stage, StageOptions, StreamFilter
from gw.types import ByteSize as _ByteSize
from gw.types import size_range
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from .content import Unmaskable, codec_for, parse_media_type, passes_through, stream_kind, valid_pattern
from .fields import CsvStream, HeaderMasker, LabelMasker
from .jsonmask import JsonMasker, PathRule, PathRules
from .masking import Detection, DetectorRule, MaskCounts, TextMasker
from .patterns import ColumnPattern, JsonPath
from .rows import ResultPlan, ValueKind, first_rule, normalise_type, plan_result, scans, value_kind
from .strategies import REDACTED, Strategy, StrategyName, make_strategy
from .streams import JsonBody, JsonLines, MaskUnavailable, MessageMasker, TextStream

# ---------------------------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------------------------

#: A positive byte size in gw's size convention (``"8MiB"`` = 2^23 bytes, ``"1MB"`` = 10^6).
ByteSize = Annotated[_ByteSize, size_range(1)]


def _tables(key: str) -> Any:
    """Let a rule list mix plain strings and tables: ``"ssn"`` is ``{ KEY = "ssn" }``."""
    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return [{key: v} if isinstance(v, str) else v for v in value]
        return value
    return BeforeValidator(convert)


class _RuleOption(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Overrides the stage's ``strategy`` for this rule.
    strategy: StrategyName | None = None


class ColumnOption(_RuleOption):
    column: str

    @field_validator("column")
    @classmethod
    def _pattern(cls, v: str) -> str:
        ColumnPattern(v)
        return v


class PathOption(_RuleOption):
    path: str

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        JsonPath(v)
        return v


class DetectorOption(_RuleOption):
    detector: str


class MaskOptions(StageOptions):
    #: How masked values are replaced unless a rule says otherwise: redact | partial | hash | null.
    strategy: StrategyName = "redact"
    #: Result columns to mask (and the same names as keys in JSON bodies).
    columns: Annotated[list[ColumnOption], _tables("column")] = Field(default_factory=list)
    #: Places in JSON bodies and json/jsonb columns to mask.
    json_paths: Annotated[list[PathOption], _tables("path")] = Field(default_factory=list)
    #: Detectors run on every text value not masked by a column rule, and on text and JSON streams.
    detectors: Annotated[list[DetectorOption], _tables("detector")] = Field(default_factory=list)
    #: Environment variable holding the secret key of the ``hash`` strategy (at least 16 characters).
    hash_key_env: str | None = None
    #: Largest JSON body (or JSON line) masked; a larger one is refused, never passed unmasked.
    max_body: ByteSize = 8 * 1024 * 1024
    #: Longest text line held back for masking before it is flushed in parts.
    max_line: ByteSize = 64 * 1024
    #: Stream channels that carry interactive terminal output (no line buffering; see docs).
    interactive_channels: list[str] = Field(default_factory=lambda: ["pty"])
    #: Further column type names whose values are plain text (domain-specific or protocol-specific names).
    text_types: list[str] = Field(default_factory=list)
    #: Media types (globs allowed: ``image/*``) passed through unmasked although gw cannot parse them
    #: (octet streams, images, archives; ``application/octet-stream`` also allows binary WebSocket messages).
    #: Without an entry, such content is refused whenever masking applies.
    pass_through_types: list[str] = Field(default_factory=list)
    #: Let sessions read the database's planner statistics (``pg_stats`` ...), which hold column values;
    #: refused by default whenever this stage masks anything.
    allow_statistics: bool = False

    @field_validator("pass_through_types")
    @classmethod
    def _media_types(cls, v: list[str]) -> list[str]:
        out = []
        for entry in v:
            media = entry.strip().lower()
            if not valid_pattern(media):
                raise ValueError(f"{entry!r} is not a media type such as \"application/octet-stream\" or "
                                 "\"image/*\" (no parameters)")
            out.append(media)
        return out

    @model_validator(mode="after")
    def _hash_needs_key(self) -> MaskOptions:
        if self.uses_hash() and not self.hash_key_env:
            raise ValueError("the hash strategy needs a secret key: set hash_key_env to the name of an "
                             "environment variable holding it (e.g. hash_key_env = \"GW_MASK_KEY\")")
        return self

    def uses_hash(self) -> bool:
        rules: Sequence[_RuleOption] = [*self.columns, *self.json_paths, *self.detectors]
        return self.strategy == "hash" or any(r.strategy == "hash" for r in rules)


#: Channels the stage never rewrites (the channel names protocol plugins use, see docs/plugins/mask.md): what
#: the agent sends -- masking a request body would change what is written upstream -- and terminal control.
UNMASKED_CHANNELS = frozenset(c for c in Channel if c.direction is not Direction.TO_AGENT)
#: Terminal output: read leniently (bytes that are not text pass through unchanged), without label rules.
TERMINAL_CHANNELS = frozenset({Channel.STDOUT, Channel.STDERR, Channel.PTY})
#: Channels where each ``feed`` carries one whole message (WebSocket messages from the upstream).
MESSAGE_CHANNELS = frozenset({Channel.WS_SERVER})
#: The HTTP response head as ``[["name", "value"], ...]`` (see docs/plugins/mask.md).
HEADERS_CHANNEL = Channel.RESPONSE_HEADERS

#: Tables and views holding values of other tables' columns (planner statistics, statement texts): read only
#: with ``allow_statistics = true``.
STATISTICS_TABLES = frozenset({"pg_stats", "pg_statistic", "pg_stats_ext", "pg_stats_ext_exprs",
                               "pg_statistic_ext_data", "pg_stat_statements", "pg_stat_statements_info",
                               "pg_stat_activity"})
#: Command attributes a protocol sets for the stage (see docs/plugins/mask.md): the sources
#: (``schema.table.column``, ``*`` for any part) the values a command writes derive from, and those it reads.
WRITES_ATTRIBUTE = "sql.writes"
READS_ATTRIBUTE = "sql.reads"
#: Attributes the stage sets on every command it sees, for the protocol's handling of server text: whether
#: the command reads a masked column (or gw cannot tell), and a function masking what detectors find in text.
TOUCHES_ATTRIBUTE = "mask.touches"
TEXT_ATTRIBUTE = "mask.text"

#: Shortest accepted hash key: a short key lets anyone holding tokens test candidate values offline.
MIN_HASH_KEY = 16


# ---------------------------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------------------------


class MaskStage(Stage):
    """Masks sensitive columns and detected values in results before the agent sees them."""

    name = "mask"
    Options = MaskOptions
    transforms = True
    #: Column rules match on where values come from (lineage), so the protocol must work it out.
    wants_sources = True

    options: MaskOptions

    def __init__(self, options: MaskOptions, services: Any, *, pipeline: str = "", index: int = 0) -> None:
        super().__init__(options, services, pipeline=pipeline, index=index)
        self._detectors = [self._lookup(rule.detector, i) for i, rule in enumerate(options.detectors)]
        self._text_types = frozenset(normalise_type(t) for t in options.text_types)
        self._plans: dict[tuple[Column, ...], ResultPlan | None] = {}
        self._ready = False
        # The hash key comes from the environment of ``gw serve``; CLI commands that only read the store
        # build the same pipelines without it, so a missing key is reported when the stage opens.
        key = self._hash_key() if options.uses_hash() else None
        if key is not None or not options.uses_hash():
            self._build(key)

    def _lookup(self, name: str, i: int) -> Detector:
        try:
            detector = self.services.detector(name)
        except PluginError as e:
            raise ConfigError(f"detectors[{i}]: {e}") from None
        if not isinstance(detector, Detector):
            raise ConfigError(f"detectors[{i}]: detector {name!r} has no name/find(text); its plugin is broken")
        return detector

    def _hash_key(self) -> bytes | None:
        env = self.options.hash_key_env
        assert env is not None
        value = os.environ.get(env)
        if value is None:
            return None
        if len(value) < MIN_HASH_KEY:
            raise ConfigError(f"hash_key_env: the key in ${env} is shorter than {MIN_HASH_KEY} characters; "
                              "use a random secret, e.g. python -c 'import secrets; print(secrets.token_hex(32))'")
        return value.encode()

    def _build(self, key: bytes | None) -> None:
        opts = self.options

        def strategy(name: str | None) -> Strategy:
            return make_strategy(name or opts.strategy, key)

        self._column_rules = [(ColumnPattern(r.column), strategy(r.strategy)) for r in opts.columns]
        #: source -> whether a column rule covers it (what every command's reads and writes are checked for)
        self._masked_sources: dict[str, bool] = {}
        self._detection = Detection([DetectorRule(d, strategy(r.strategy))
                                     for d, r in zip(self._detectors, opts.detectors)])
        path_rules = [PathRule(JsonPath(r.path), strategy(r.strategy)) for r in opts.json_paths]
        path_rules += [PathRule(p.as_json_path(), s) for p, s in self._column_rules]
        self._path_rules = PathRules(path_rules)
        self._ready = True

    async def open(self) -> None:
        if not self._ready:
            key = self._hash_key()
            if key is None:
                raise ConfigError(f"hash_key_env: environment variable ${self.options.hash_key_env} is not set; "
                                  "the hash strategy needs its secret key to mask anything. Set it for gw serve")
            self._build(key)

    def _require_ready(self) -> None:
        if not self._ready:  # fail closed: a filter without its key would pass values through
            raise ConfigError(f"the mask stage of pipeline {self.pipeline!r} has no hash key yet "
                              f"(${self.options.hash_key_env} is not set)")

    # -- counts ---------------------------------------------------------------------------------------------
    def _counts_for(self, command: Command) -> MaskCounts:
        return self.state(command, MaskCounts)

    def counts(self, command: Command) -> MaskCounts | None:
        """What has been masked so far in the results of a command still in flight (None if no filter was
        needed): the command's state, which core drops after :meth:`completed`."""
        return self.state_if_any(command, MaskCounts)

    async def completed(self, command: Command, outcome: Outcome) -> None:
        counts = self.counts(command)
        if counts is not None:
            outcome.notes["masked"] = counts.as_note()

    # -- commands -------------------------------------------------------------------------------------------
    def masks_anything(self) -> bool:
        return bool(self.options.columns or self.options.detectors or self.options.json_paths)

    def masked_source(self, source: str) -> bool:
        """Whether a column rule covers the source ``schema.table.column`` (``*`` parts match any rule)."""
        self._require_ready()
        hit = self._masked_sources.get(source)
        if hit is None:
            probe = Column(name="\x00", sources=(source,))
            hit = any(pattern.matches(probe) for pattern, _ in self._column_rules)
            if len(self._masked_sources) >= 4096:  # the sources of ad-hoc queries: keep it bounded
                self._masked_sources.clear()
            self._masked_sources[source] = hit
        return hit

    def evaluate(self, command: Command) -> Verdict | None:
        """Refuses what would carry a masked value past the stage (copies into other places, planner
        statistics), and tells the protocol how to treat the server's own text for this command."""
        if not self.masks_anything() or command.language != "sql":
            return None
        self._require_ready()
        attributes = command.attributes
        if isinstance(attributes, dict):
            reads = attributes.get(READS_ATTRIBUTE)
            touches = reads is None or any(self.masked_source(s) for s in reads)
            attributes[TOUCHES_ATTRIBUTE] = touches
            attributes[TEXT_ATTRIBUTE] = self._mask_server_text
        if not self.options.allow_statistics:
            named = [o.rsplit(".", 1)[-1] for o in command.objects]
            named += [s.rsplit(".", 2)[-2] for s in attributes.get(READS_ATTRIBUTE) or () if s.count(".") >= 2]
            hit = next((n for n in named if n.lower() in STATISTICS_TABLES), None)
            if hit is not None:
                return Verdict.deny(
                    f"this pipeline masks values, and {hit} holds values of table columns (planner statistics "
                    "or statement texts), so gw refuses to read it. Query the tables themselves (masking "
                    "applies there), or ask the gateway operator to set allow_statistics = true on the mask "
                    "stage", code=DenyCode.POLICY, stage=self.name, rule="allow_statistics")
        if self._column_rules:
            writes = attributes.get(WRITES_ATTRIBUTE)
            copied = sorted(s for s in writes or () if self.masked_source(s))
            if copied:
                shown = ", ".join(c.replace(".*", " (whole rows)") if c != "*.*.*" else "values gw cannot trace"
                                  for c in copied[:3])
                return Verdict.deny(
                    f"this statement would copy values of masked columns ({shown}) into a table, a setting or a "
                    "message, where they could be read unmasked; gw refuses it. Write values that do not derive "
                    "from masked columns, or read the masked columns directly", code=DenyCode.POLICY,
                    stage=self.name, rule="masked_copy")
        return None

    def conceal(self, command: Command, values: ParamValues) -> ParamValues:
        """Bound parameter values as approvers see them.  Gw does not know which parameter goes into which
        column, so whenever the command may read or write a column a column rule covers (a source it reads or
        copies from, a table it names that may hold such a column, or facts it lacks) every value is redacted;
        named arguments are masked by a rule matching their name.  What is left passes the detectors."""
        if not self.masks_anything():
            return values
        self._require_ready()
        if isinstance(values, dict):
            out: dict[str, str | None] = {}
            for name, value in values.items():
                rule = next((st for pattern, st in self._column_rules if pattern.matches(Column(name=name))),
                            None) if value is not None else None
                out[name] = rule.mask(value) if rule is not None and value is not None else \
                    self._detected(value)
            if self._column_rules and command.language == "sql" and self._may_touch_masked(command):
                return {name: None if v is None else REDACTED for name, v in out.items()}
            return out
        if self._column_rules and (command.language != "sql" or self._may_touch_masked(command)):
            return [None if v is None else REDACTED for v in values]
        return [self._detected(v) for v in values]

    def _detected(self, value: str | None) -> str | None:
        return None if value is None else self._mask_server_text(value)

    def _may_touch_masked(self, command: Command) -> bool:
        """Whether the command may read or write a column a column rule covers (fail closed)."""
        attributes = command.attributes or {}
        reads, writes = attributes.get(READS_ATTRIBUTE), attributes.get(WRITES_ATTRIBUTE)
        if reads is None or any(self.masked_source(s) for s in (*reads, *(writes or ()))):
            return True
        for name in command.objects:
            parts = name.lower().rsplit(".", 2)[-2:]
            table = ".".join(parts) if len(parts) == 2 else f"*.{parts[0]}"
            if self.masked_source(f"{table}.*"):  # every column of the table: may a rule cover one of them
                return True
        return False

    def _mask_server_text(self, text: str) -> str:
        """What the detectors find in a text the server sent (an error, a notice, a notification)."""
        if not self._detection:
            return text
        masked = TextMasker(self._detection, MaskCounts()).mask(text)
        return text if masked is None else masked

    # -- filters --------------------------------------------------------------------------------------------
    def _text_masker(self, counts: MaskCounts) -> TextMasker | None:
        return TextMasker(self._detection, counts) if self._detection else None

    def explain(self, command: Command) -> str | None:
        """The mask plan (``gw policy explain``): per column of the command's result, as the protocol found it
        without running the command (:data:`gw.model.RESULT_COLUMNS`), whether it is masked and by which rule
        or detectors; the rules alone when the protocol's results are not tables."""
        if not self.masks_anything():
            return None
        opts = self.options
        plan = []
        if opts.columns:
            plan.append("result columns matching " + ", ".join(c.column for c in opts.columns))
        if opts.json_paths:
            plan.append("JSON paths " + ", ".join(p.path for p in opts.json_paths))
        if opts.detectors:
            plan.append("values found by " + ", ".join(d.detector for d in opts.detectors))
        rules = f"masks {'; '.join(plan)} ({opts.strategy}) in what the agent is shown"
        shape = command.attributes.get(RESULT_COLUMNS)
        if shape is None:
            return rules
        if isinstance(shape, str):
            return f"{rules}; which columns of this result: {shape}"
        if not shape:
            return "the statement returns no rows: no result column to mask"
        header = "result columns:" if any(c.type_name for c in shape) else \
            "result columns (from the statement's text; their types are known when it runs):"
        return "\n".join([header, *(self._column_plan(c) for c in shape)])

    def _column_plan(self, column: Column) -> str:
        """``ssn (text): masked by rule ssn (redact)`` -- one line of the mask plan."""
        opts = self.options
        rules = [(ColumnPattern(r.column), r.strategy or opts.strategy) for r in opts.columns]
        kind = value_kind(column, self._text_types)
        detectors = ", ".join(d.detector for d in opts.detectors)
        rule = first_rule(column, rules)
        if rule is not None:
            pattern, strategy = rule
            how = f"masked by rule {cast(ColumnPattern, pattern).text} ({strategy})"
            if column.fields is not None:
                how += ", field by field"
            elif kind in (ValueKind.OPAQUE, ValueKind.OTHER) and strategy != "null":
                how += ", as NULL (a masked text would not decode as this type)"
        elif scans(kind, bool(opts.detectors), bool(opts.json_paths or opts.columns)):
            scanners = " and ".join(p for p in ("JSON paths" if kind is ValueKind.JSON and
                                                 (opts.json_paths or opts.columns) else "",
                                                 f"detectors {detectors}" if detectors else "") if p)
            how = f"no rule; values searched by {scanners}"
            if kind is ValueKind.OPAQUE:
                how += " (NULL where one finds something)"
        elif kind is ValueKind.OTHER and detectors:
            how = f"not masked (no rule; {column.type_name} values are not searched by detectors)"
        else:
            how = "not masked (no rule)"
        typed = f" ({column.type_name})" if column.type_name else ""
        shown = column.sources[:3]
        origin = ""
        if shown and not (len(shown) == 1 and shown[0].rsplit(".", 1)[-1] == column.name):
            origin = " from " + ", ".join(shown) + (" ..." if len(column.sources) > 3 else "")
        return f"{column.name}{typed}{origin}: {how}"

    def rows(self, command: Command, columns: Sequence[Column]) -> RowFilter | None:
        self._require_ready()
        key = tuple(columns)
        try:
            plan = self._plans[key]
        except KeyError:
            plan = plan_result(columns, self._column_rules, bool(self._detection), bool(self._path_rules),
                               self._text_types)
            if len(self._plans) >= 4096:  # result shapes of ad-hoc queries: keep the cache bounded
                self._plans.clear()
            self._plans[key] = plan
        if plan is None:
            return None
        counts = self._counts_for(command)
        text = self._text_masker(counts)
        json_masker = JsonMasker(self._path_rules, text, counts) if (self._path_rules or text) else None
        return plan.bind(text, json_masker, counts)

    def stream(self, command: Command, channel: str, content_type: str = "") -> StreamFilter | None:
        if channel in UNMASKED_CHANNELS:
            return None
        self._require_ready()
        if not self._detection and not self._path_rules:
            return None  # no rule, no detector: nothing to mask anywhere
        counts = self._counts_for(command)
        text = self._text_masker(counts)
        if channel == HEADERS_CHANNEL:
            return HeaderMasker(self._column_rules, text, counts)
        try:
            return self._stream_filter(channel, content_type, counts, text)
        except Unmaskable as e:
            raise MaskUnavailable(
                f"gw could not mask this response: {e}, and a response that needs masking is never passed on "
                "unmasked. Ask the service for JSON, CSV or text, or ask the gateway operator to list the type "
                "in the mask stage's pass_through_types") from None

    def _stream_filter(self, channel: str, content_type: str, counts: MaskCounts, text: TextMasker | None
                       ) -> StreamFilter | None:
        opts = self.options
        terminal = channel in TERMINAL_CHANNELS or channel in opts.interactive_channels
        labels = LabelMasker(self._column_rules, counts) if self._column_rules and not terminal else None
        if not content_type:  # terminal output without a declared type
            if text is None and labels is None:
                return None
            return TextStream(text, max_line=opts.max_line, interactive=channel in opts.interactive_channels,
                              labels=labels)
        media = parse_media_type(content_type)
        pass_through = tuple(opts.pass_through_types)
        if channel in MESSAGE_CHANNELS:
            if media.media == "text/plain":
                json_masker = JsonMasker(self._path_rules, text, counts) if self._path_rules else None
                return MessageMasker(json_masker, text, labels, max_body=opts.max_body)
            if passes_through(media.media, pass_through):
                return None
            raise Unmaskable(f"its WebSocket messages are binary ({media.media}), which gw cannot parse")
        kind = stream_kind(media)
        if kind is None:
            if passes_through(media.media, pass_through):
                return None
            what = "multipart bodies" if media.media.startswith("multipart/") else f"{media.media!r}"
            raise Unmaskable(f"its content type is {what}, which gw cannot parse")
        charset = media.param("charset") or ""
        if charset:
            try:
                charset = codec_for(charset)
            except Unmaskable:
                if passes_through(media.media, pass_through):
                    return None
                raise
        if kind == "json" or kind == "jsonlines":
            masker = JsonMasker(self._path_rules, text, counts)
            if kind == "jsonlines":
                return JsonLines(masker, max_body=opts.max_body, charset=charset)
            return JsonBody(masker, max_body=opts.max_body, charset=charset)
        if kind in ("csv", "tsv"):
            header = (media.param("header") or "present").lower() != "absent"
            if not header and self._column_rules:
                raise Unmaskable("it is CSV without a header row (header=absent), so gw cannot tell which "
                                 "column is which")
            return CsvStream(self._column_rules, text, counts, charset=charset or "utf-8",
                             delimiter="\t" if kind == "tsv" else None, header=header, max_record=opts.max_body)
        if text is None and labels is None:
            return None
        return TextStream(text, max_line=opts.max_line, interactive=channel in opts.interactive_channels,
                          charset=charset, strict=not terminal, labels=labels)
