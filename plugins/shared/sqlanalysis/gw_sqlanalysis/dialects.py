"""What gw knows about each SQL dialect beyond its grammar: functions with side effects, harmless settings.

These lists are deliberately explicit.  A function gw cannot vouch for makes the statement ``unknown``
(fail closed), so a missing entry in :attr:`DialectRules.safe_functions` costs usability, never safety; a
missing entry in the side-effect lists costs nothing either, because an unlisted function is ``unknown``,
which ranks above ``admin`` and ``write``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import sqlglot

from .mysql import CHARSETS as _MYSQL_CHARSETS


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# -- PostgreSQL -------------------------------------------------------------------------------------------------

#: Server administration, other sessions, the file system, the network, replication: ``admin``.
PG_ADMIN_FUNCTIONS = _words("""
    pg_terminate_backend pg_cancel_backend pg_reload_conf pg_rotate_logfile pg_rotate_logfile_old
    set_config pg_read_file pg_read_binary_file pg_ls_dir pg_stat_file pg_ls_logdir pg_ls_waldir
    pg_ls_tmpdir pg_ls_archive_statusdir pg_ls_logicalsnapdir pg_ls_logicalmapdir pg_ls_replslotdir
    pg_file_write pg_file_rename pg_file_unlink pg_file_sync pg_logdir_ls
    lo_import lo_export
    dblink dblink_exec dblink_connect dblink_connect_u dblink_disconnect dblink_open dblink_fetch
    dblink_close dblink_send_query dblink_get_result dblink_cancel_query
    pg_sleep pg_sleep_for pg_sleep_until
    pg_advisory_lock pg_advisory_lock_shared pg_advisory_xact_lock pg_advisory_xact_lock_shared
    pg_try_advisory_lock pg_try_advisory_lock_shared pg_try_advisory_xact_lock
    pg_try_advisory_xact_lock_shared pg_advisory_unlock pg_advisory_unlock_shared pg_advisory_unlock_all
    pg_switch_wal pg_switch_xlog pg_create_restore_point pg_start_backup pg_stop_backup pg_backup_start
    pg_backup_stop pg_promote pg_wal_replay_pause pg_wal_replay_resume pg_xlog_replay_pause
    pg_xlog_replay_resume
    pg_create_physical_replication_slot pg_create_logical_replication_slot pg_drop_replication_slot
    pg_copy_physical_replication_slot pg_copy_logical_replication_slot pg_replication_slot_advance
    pg_logical_slot_get_changes pg_logical_slot_peek_changes pg_logical_slot_get_binary_changes
    pg_logical_slot_peek_binary_changes pg_logical_emit_message
    pg_replication_origin_create pg_replication_origin_drop pg_replication_origin_session_setup
    pg_replication_origin_session_reset pg_replication_origin_xact_setup pg_replication_origin_xact_reset
    pg_replication_origin_advance
    pg_stat_reset pg_stat_reset_shared pg_stat_reset_single_table_counters
    pg_stat_reset_single_function_counters pg_stat_reset_slru pg_stat_reset_replication_slot
    pg_stat_reset_subscription_stats pg_stat_statements_reset
    pg_import_system_collations pg_log_backend_memory_contexts pg_signal_backend
    pg_import_snapshot pg_export_snapshot
""")

#: Functions that change data or sequences: ``write``.
PG_WRITE_FUNCTIONS = _words("""
    nextval setval pg_notify
    lo_create lo_creat lo_unlink lo_put lo_from_bytea lo_truncate lo_truncate64 lowrite lo_open
""")

#: Functions that run SQL handed to them as a string (gw cannot see what runs): ``unknown``.
PG_SQL_TEXT_FUNCTIONS = _words("""
    query_to_xml query_to_xmlschema query_to_xml_and_xmlschema cursor_to_xml cursor_to_xmlschema
    table_to_xml table_to_xmlschema table_to_xml_and_xmlschema schema_to_xml schema_to_xmlschema
    schema_to_xml_and_xmlschema database_to_xml database_to_xmlschema database_to_xml_and_xmlschema
    ts_stat ts_rewrite
""")

#: Built-in functions sqlglot does not model but that only compute or read (no side effects).
PG_SAFE_FUNCTIONS = _words("""
    int4range int8range numrange tsrange tstzrange daterange int4multirange int8multirange nummultirange
    tsmultirange tstzmultirange datemultirange lower_inc upper_inc lower_inf upper_inf isempty range_merge
    point line lseg box path polygon circle area center diameter radius height width npoints pclose popen
    isclosed isopen bound_box
    is_normalized current_query
    current_database current_schema current_schemas current_user session_user current_setting version
    current_catalog current_role user pg_backend_pid pg_postmaster_start_time pg_conf_load_time
    inet_server_addr inet_server_port inet_client_addr inet_client_port pg_is_in_recovery
    pg_size_pretty pg_size_bytes pg_relation_size pg_total_relation_size pg_table_size pg_indexes_size
    pg_database_size pg_tablespace_size pg_column_size pg_relation_filenode pg_relation_filepath
    pg_get_viewdef pg_get_indexdef pg_get_constraintdef pg_get_functiondef pg_get_function_arguments
    pg_get_function_result pg_get_function_identity_arguments pg_get_triggerdef pg_get_ruledef pg_get_expr
    pg_get_userbyid pg_get_keywords pg_get_serial_sequence pg_get_statisticsobjdef pg_get_partkeydef
    pg_table_is_visible pg_type_is_visible pg_function_is_visible pg_opclass_is_visible
    pg_operator_is_visible pg_collation_is_visible pg_conversion_is_visible pg_ts_config_is_visible
    format_type obj_description col_description shobj_description pg_describe_object pg_identify_object
    has_table_privilege has_column_privilege has_any_column_privilege has_schema_privilege
    has_database_privilege has_function_privilege has_sequence_privilege has_tablespace_privilege
    has_type_privilege has_language_privilege has_server_privilege has_foreign_data_wrapper_privilege
    pg_has_role row_security_active pg_typeof pg_encoding_to_char pg_char_to_encoding
    to_regclass to_regtype to_regproc to_regprocedure to_regnamespace to_regrole to_regoper
    to_regoperator to_regcollation to_regtypemod
    txid_current txid_current_if_assigned txid_current_snapshot txid_snapshot_xmin txid_snapshot_xmax
    txid_visible_in_snapshot txid_status pg_current_xact_id pg_current_xact_id_if_assigned
    pg_current_snapshot pg_snapshot_xmin pg_snapshot_xmax pg_xact_status pg_xact_commit_timestamp
    pg_current_wal_lsn pg_current_wal_insert_lsn pg_current_wal_flush_lsn pg_last_wal_receive_lsn
    pg_last_wal_replay_lsn pg_last_xact_replay_timestamp pg_wal_lsn_diff pg_walfile_name
    pg_blocking_pids pg_safe_snapshot_blocking_pids pg_stat_get_activity pg_listening_channels
    pg_notification_queue_usage pg_trigger_depth pg_jit_available pg_get_wal_replay_pause_state
    pg_is_wal_replay_paused pg_tablespace_location pg_tablespace_databases pg_options_to_table
    pg_index_column_has_property pg_index_has_property pg_indexam_has_property
    currval lastval age mxid_age now statement_timestamp clock_timestamp transaction_timestamp timeofday
    date_part date_trunc date_bin extract isfinite justify_days justify_hours justify_interval make_date
    make_time make_timestamp make_timestamptz make_interval to_char to_date to_number to_timestamp
    lower upper initcap length char_length character_length octet_length bit_length substr substring
    position strpos replace translate trim btrim ltrim rtrim lpad rpad concat concat_ws format left right
    reverse repeat split_part string_to_array string_to_table array_to_string regexp_match
    regexp_matches regexp_replace regexp_split_to_array regexp_split_to_table regexp_count regexp_instr
    regexp_like regexp_substr md5 sha224 sha256 sha384 sha512 encode decode quote_ident quote_literal
    quote_nullable ascii chr starts_with to_hex overlay normalize unistr convert convert_from convert_to
    abs ceil ceiling floor round trunc mod power pow sqrt cbrt exp ln log log10 sign div degrees radians
    pi sin cos tan asin acos atan atan2 sinh cosh tanh width_bucket gcd lcm factorial scale min_scale
    trim_scale random random_normal setseed gen_random_uuid uuid_generate_v4 uuid_generate_v1
    greatest least coalesce nullif num_nonnulls num_nulls
    count sum avg min max array_agg string_agg json_agg jsonb_agg json_object_agg jsonb_object_agg
    bool_and bool_or every bit_and bit_or bit_xor stddev stddev_pop stddev_samp variance var_pop var_samp
    corr covar_pop covar_samp regr_slope regr_intercept regr_count regr_r2 percentile_cont
    percentile_disc mode rank dense_rank percent_rank cume_dist row_number ntile lag lead first_value
    last_value nth_value grouping
    unnest generate_series generate_subscripts array_length array_upper array_lower array_ndims
    array_dims cardinality array_position array_positions array_remove array_replace array_append
    array_prepend array_cat array_fill trim_array
    to_json to_jsonb row_to_json array_to_json json_build_object jsonb_build_object json_build_array
    jsonb_build_array json_object jsonb_object json_array_length jsonb_array_length json_each jsonb_each
    json_each_text jsonb_each_text json_extract_path jsonb_extract_path json_extract_path_text
    jsonb_extract_path_text json_object_keys jsonb_object_keys json_array_elements jsonb_array_elements
    json_array_elements_text jsonb_array_elements_text json_typeof jsonb_typeof json_strip_nulls
    jsonb_strip_nulls jsonb_set jsonb_set_lax jsonb_insert jsonb_pretty json_populate_record
    jsonb_populate_record json_populate_recordset jsonb_populate_recordset json_to_record jsonb_to_record
    json_to_recordset jsonb_to_recordset jsonb_path_query jsonb_path_query_array jsonb_path_query_first
    jsonb_path_exists jsonb_path_match
    row int2 int4 int8 float4 float8 numeric text varchar bool date time timestamp timestamptz interval
    inet cidr host masklevel family network netmask broadcast abbrev
    tsvector to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank
    ts_rank_cd ts_headline setweight strip numnode querytree
    xmlelement xmlforest xmlconcat xmlagg xmlparse xmlserialize xpath xpath_exists xmlexists xml_is_well_formed
    array_sample array_shuffle
    acosh asinh atanh cot acosd asind atand cosd sind tand cotd any_value get_bit set_bit get_byte set_byte
    bit_count date_add date_subtract jsonb_exists jsonb_exists_any jsonb_exists_all json_scalar json_serialize
    json_object json_array json_objectagg json_arrayagg json_exists json_value json_query jsonb_contains
    regr_avgx regr_avgy regr_sxx regr_sxy regr_syy
""")

#: Names gw reads as syntax or as built-ins that are not functions of ``pg_catalog`` (``COALESCE(...)`` is
#: syntax).  Quoted, they are only names: ``"coalesce"(1, 2)`` calls a user function called coalesce.
PG_NOT_CATALOG_FUNCTIONS = _words("""
    all and any array as between by case cast character coalesce collate collation current_catalog
    current_date current_role current_time current_timestamp decimal double else end except exists filter
    float from greatest group grouping ilike in intersect is join lateral least localtime localtimestamp
    nchar not nullif on or order over partition returning row select set similar some table then treat trim
    union user using values when where with within xmlattributes xmlconcat xmlelement xmlforest
    xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable masklevel inet tsvector
""")

#: Words of PostgreSQL's grammar that may stand before ``(`` (keywords, type names, SQL-standard function
#: syntax) and that sqlglot happens to model as functions.  Any other name sqlglot models but PostgreSQL does
#: not have (``ifnull``, ``decrypt``, ``read_csv``, ``to_file`` ...) can only be a user or extension function
#: in PostgreSQL: gw cannot vouch for it.
PG_GRAMMAR_CALLS = _words("""
    and or not like ilike similar in is exists any all some array row case cast filter collate collation
    values over within using on as with lateral table select from where join union except intersect
    returning set by group order partition when then else end between
    char character varchar nchar bit float double decimal numeric interval time timestamp date
    current_date current_time current_timestamp localtime localtimestamp current_user current_role
    session_user user current_catalog current_schema extract overlay position substring trim treat nullif
    coalesce greatest least grouping normalize xmlelement xmlforest xmlconcat xmlparse xmlserialize xmlroot
    xmlpi xmltable xmlexists xmlattributes xmlagg xmlnamespaces json_table
""")

#: Session settings that neither change privileges, data visibility, name resolution nor how gw reads
#: statements and results: ``SET`` of these is ``read``; any other ``SET`` is ``admin``.
PG_HARMLESS_SETTINGS = _words("""
    application_name datestyle intervalstyle timezone extra_float_digits bytea_output client_min_messages
    statement_timeout lock_timeout idle_in_transaction_session_timeout idle_session_timeout
    transaction_timeout lc_monetary lc_numeric lc_time default_transaction_isolation
    default_transaction_deferrable enable_seqscan enable_indexscan enable_bitmapscan enable_hashjoin
    enable_mergejoin enable_nestloop random_page_cost
""")
#: Settings that are transaction control in disguise: ``SET`` of these is ``transaction``.
PG_TRANSACTION_SETTINGS = _words("transaction_isolation transaction_deferrable")

# -- MySQL / MariaDB --------------------------------------------------------------------------------------------

MYSQL_ADMIN_FUNCTIONS = _words("""
    sleep benchmark load_file get_lock release_lock release_all_locks master_pos_wait source_pos_wait
    master_gtid_wait wait_for_executed_gtid_set wait_until_sql_thread_after_gtids sys_exec sys_eval
    sys_set sys_get
""")
MYSQL_WRITE_FUNCTIONS = _words("nextval setval")
MYSQL_SQL_TEXT_FUNCTIONS: frozenset[str] = frozenset()
MYSQL_SAFE_FUNCTIONS = _words("""
    database schema user current_user session_user system_user version connection_id last_insert_id
    row_count found_rows uuid uuid_short now curdate curtime sysdate utc_date utc_time utc_timestamp
    date_format str_to_date from_unixtime unix_timestamp datediff timestampdiff timestampadd date_add
    date_sub adddate subdate dayofweek dayofmonth dayofyear weekday week yearweek monthname dayname
    last_day makedate maketime sec_to_time time_to_sec to_days from_days period_add period_diff
    lower upper lcase ucase length char_length character_length octet_length substr substring
    substring_index mid left right concat concat_ws replace reverse repeat lpad rpad ltrim rtrim trim
    locate instr position field find_in_set elt format hex unhex md5 sha sha1 sha2 crc32 to_base64
    from_base64 quote soundex space strcmp ascii ord char bin oct conv
    abs ceil ceiling floor round truncate mod pow power sqrt exp ln log log2 log10 sign rand pi sin cos
    tan asin acos atan atan2 cot degrees radians greatest least coalesce ifnull nullif if isnull
    count sum avg min max group_concat json_arrayagg json_objectagg std stddev stddev_pop stddev_samp
    variance var_pop var_samp bit_and bit_or bit_xor
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
    json_extract json_unquote json_object json_array json_contains json_contains_path json_keys
    json_length json_type json_valid json_search json_set json_insert json_replace json_remove
    json_merge_patch json_merge_preserve json_pretty json_quote json_depth json_value json_table
    inet_aton inet_ntoa inet6_aton inet6_ntoa is_ipv4 is_ipv6 charset collation coercibility
""")
MYSQL_HARMLESS_SETTINGS = _words("""
    time_zone max_execution_time max_statement_time net_read_timeout net_write_timeout wait_timeout
    interactive_timeout lock_wait_timeout innodb_lock_wait_timeout group_concat_max_len sql_select_limit
    profiling sql_notes sql_warnings div_precision_increment
    sql_mode character_set_client character_set_connection character_set_results collation_connection
""")
#: (sql_mode and the character sets are harmless because the MySQL protocol plugin follows them as the server
#: reports them, refusing statements it would read differently and restoring a setting it cannot follow.)
MYSQL_TRANSACTION_SETTINGS = _words("autocommit transaction_isolation tx_isolation transaction_read_only "
                                    "tx_read_only completion_type")
#: ``SET NAMES x`` with these moves the session to a character set gw reads like the server (multibyte ones
#: included: gw_sqlanalysis.mysql groups their bytes as the server does and refuses statements whose structure
#: depends on it); any other character set is ``admin``.
MYSQL_SAFE_CHARSETS = frozenset(_MYSQL_CHARSETS)


@dataclass(frozen=True)
class DialectRules:
    """Everything dialect-specific that classification needs."""

    name: str
    #: The sqlglot dialect name.
    sqlglot: str
    #: Schema of unqualified table names (``public``); None: report them bare (MySQL without a database).
    default_schema: str | None
    #: Schemas whose functions are built-ins (a call qualified with any other schema is a user function).
    builtin_schemas: frozenset[str]
    admin_functions: frozenset[str]
    write_functions: frozenset[str]
    sql_text_functions: frozenset[str]
    safe_functions: frozenset[str]
    harmless_settings: frozenset[str]
    transaction_settings: frozenset[str]
    #: The operator's own functions and what they do (``myschema.purge`` -> ``write``); names lower case,
    #: qualified or bare.  A listed function is never ``unknown``; it raises a statement to its kind.
    function_kinds: dict[str, str] = field(default_factory=dict)

    @cached_property
    def sqlglot_functions(self) -> frozenset[str]:
        """Upper-case names sqlglot maps to typed built-in functions (it does so even for a quoted name)."""
        parser = sqlglot.Dialect.get_or_raise(self.sqlglot).parser_class
        return frozenset(parser.FUNCTIONS) | frozenset(parser.FUNCTION_PARSERS)


def rules_for(dialect: str, *, default_schema: str | None = None, safe_functions: frozenset[str] = frozenset(),
              function_kinds: dict[str, str] | None = None) -> DialectRules:
    """The rules of ``dialect`` (``postgres`` or ``mysql``), with operator additions."""
    if dialect in ("postgres", "postgresql"):
        return DialectRules(
            "postgres", "postgres", default_schema or "public", frozenset({"pg_catalog"}),
            PG_ADMIN_FUNCTIONS, PG_WRITE_FUNCTIONS, PG_SQL_TEXT_FUNCTIONS, PG_SAFE_FUNCTIONS | safe_functions,
            PG_HARMLESS_SETTINGS, PG_TRANSACTION_SETTINGS,
            {k.lower(): v for k, v in (function_kinds or {}).items()})
    if dialect in ("mysql", "mariadb"):
        return DialectRules(
            "mysql", "mysql", default_schema, frozenset(),
            MYSQL_ADMIN_FUNCTIONS, MYSQL_WRITE_FUNCTIONS, MYSQL_SQL_TEXT_FUNCTIONS,
            MYSQL_SAFE_FUNCTIONS | safe_functions, MYSQL_HARMLESS_SETTINGS, MYSQL_TRANSACTION_SETTINGS)
    raise ValueError(f"unsupported SQL dialect {dialect!r}; expected \"postgres\" or \"mysql\"")
