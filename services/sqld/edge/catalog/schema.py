"""The pg_catalog relations as SQLite SELECTs over the live schema (sqlite_schema and pragmas).

Each relation is a CTE body. Rows come from the database at the moment the query runs: nothing
is stored. Static rows (pg_type, pg_namespace, pg_am, the single role) describe PostgreSQL's
type system and fixed objects, not the user's schema.

OIDs: a table, view or SQLite index is 16384 + its sqlite_schema rowid; a primary key that is
SQLite's rowid gets a synthetic index 2000000 + the table's rowid; a PRIMARY KEY or UNIQUE
constraint is 3000000 + its index's OID; a foreign key is 6000000 + 1000 * table rowid + its id.
Hidden helper columns start with `_` (e.g. pg_type._format, pg_index._indexdef).
"""
from __future__ import annotations

# True in a session of pg_dump (its application_name): tables and views then carry SQLite's own DDL
# in reloptions (`sqlite_ddl=...`, which pg_dump writes as WITH (sqlite_ddl='...') and the edge runs
# instead when the script is loaded: catalog/ddl.py), an explicit index's definition is its SQLite
# DDL, and the PRIMARY KEY, UNIQUE and FOREIGN KEY constraints, part of the table's DDL, are not
# listed (pg_dump would add them again); a trigger's SQLite DDL comes as DO LANGUAGE sqlite $sqlite$...$sqlite$
# (psql would split its body at each semicolon). See edge/DESIGN.md, "pg_dump".
DUMP = "sqld_session_app() = 'pg_dump'"

# SQLite declared type -> PostgreSQL type OID, in the order of edge.types.affinity_oid.
# (substring tests, oid); an empty declared type is reported as text.
AFFINITY = [(("INT",), 20), (("CHAR", "CLOB", "TEXT"), 25), (("BLOB",), 17),
            (("REAL", "FLOA", "DOUB"), 701), (("BOOL",), 16)]


def affinity_sql(expr: str) -> str:
    """A SQL expression giving the PostgreSQL type OID the edge reports for declared type `expr`."""
    u = f"upper(coalesce({expr}, ''))"
    whens = " ".join(f"WHEN {' OR '.join(f'instr({u}, {s!r}) > 0' for s in subs)} THEN {oid}" for subs, oid in AFFINITY)
    return f"(CASE WHEN {u} = '' THEN 25 {whens} ELSE 1700 END)"


# A declared type's base name (lower case) -> how PostgreSQL's format_type prints it.
_DECLARED = {"int": "integer", "integer": "integer", "int4": "integer", "int2": "smallint", "smallint": "smallint",
             "int8": "bigint", "bigint": "bigint", "float4": "real", "real": "real", "float8": "double precision",
             "double": "double precision", "double precision": "double precision", "float": "double precision",
             "varchar": "character varying", "character varying": "character varying", "char": "character",
             "character": "character", "bpchar": "character", "bool": "boolean", "boolean": "boolean",
             "decimal": "numeric", "timestamptz": "timestamp with time zone", "timetz": "time with time zone",
             "timestamp with time zone": "timestamp with time zone", "time with time zone": "time with time zone"}
# fixed-length types PostgreSQL stores plain (attstorage 'p'); numeric is 'm', the rest 'x'
_PLAIN = ("integer", "smallint", "bigint", "real", "double precision", "boolean", "date", "uuid", "oid")
_ZONELESS = ("timestamp", "time", "timestamp without time zone", "time without time zone")


def declared_sql(expr: str) -> str:
    """A SQL expression giving declared type `expr` as PostgreSQL's format_type would print it
    (`integer`, `character varying(20)`, `timestamp without time zone`, `numeric(10,2)`); a type
    PostgreSQL does not know is shown as written (lower case, as PostgreSQL folds names); no
    declared type shows as `text`, the type the edge gives such a column."""
    base = "rtrim(CASE WHEN instr(_d, '(') THEN substr(_d, 1, instr(_d, '(') - 1) ELSE _d END)"
    mods = "CASE WHEN instr(_d, '(') THEN replace(substr(_d, instr(_d, '(')), ' ', '') ELSE '' END"
    names = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in _DECLARED.items())
    zoneless = ", ".join(f"'{z}'" for z in _ZONELESS)
    return (f"(SELECT CASE WHEN _d = '' THEN 'text' WHEN {base} IN ({zoneless}) "
            f"THEN substr({base}, 1, instr({base} || ' ', ' ') - 1) || {mods} || ' without time zone' "
            f"ELSE CASE {base} {names} ELSE {base} END || {mods} END "
            f"FROM (SELECT lower(trim(coalesce({expr}, ''))) AS _d))")


# oid, typname, typlen, typcategory, typelem, typarray, format_type name
TYPES = [
    (16, "bool", 1, "B", 0, 1000, "boolean"), (17, "bytea", -1, "U", 0, 1001, "bytea"),
    (18, "char", 1, "S", 0, 1002, '"char"'), (19, "name", 64, "S", 0, 1003, "name"),
    (20, "int8", 8, "N", 0, 1016, "bigint"), (21, "int2", 2, "N", 0, 1005, "smallint"),
    (22, "int2vector", -1, "A", 21, 1006, "int2vector"), (23, "int4", 4, "N", 0, 1007, "integer"),
    (25, "text", -1, "S", 0, 1009, "text"), (26, "oid", 4, "N", 0, 1028, "oid"),
    (30, "oidvector", -1, "A", 26, 1013, "oidvector"), (114, "json", -1, "U", 0, 199, "json"),
    (700, "float4", 4, "N", 0, 1021, "real"), (701, "float8", 8, "N", 0, 1022, "double precision"),
    (1042, "bpchar", -1, "S", 0, 1014, "character"), (1043, "varchar", -1, "S", 0, 1015, "character varying"),
    (1082, "date", 4, "D", 0, 1182, "date"), (1083, "time", 8, "D", 0, 1183, "time without time zone"),
    (1114, "timestamp", 8, "D", 0, 1115, "timestamp without time zone"),
    (1184, "timestamptz", 8, "D", 0, 1185, "timestamp with time zone"),
    (1186, "interval", 16, "T", 0, 1187, "interval"), (1700, "numeric", -1, "N", 0, 1231, "numeric"),
    (2205, "regclass", 4, "N", 0, 2210, "regclass"), (2206, "regtype", 4, "N", 0, 2211, "regtype"),
    (2950, "uuid", 16, "U", 0, 2951, "uuid"), (3802, "jsonb", -1, "U", 0, 3807, "jsonb"),
]


def _type_rows() -> str:
    rows = []
    for oid, name, length, cat, elem, arr, fmt in TYPES:
        rows.append((oid, name, length, cat, elem, arr, fmt))
        rows.append((arr, "_" + name, -1, "A", oid, 0, fmt + "[]"))
    return ", ".join(f"({o}, '{n}', {ln}, '{c}', {e}, {a}, '{f}')" for o, n, ln, c, e, a, f in rows)


# name -> (columns with PostgreSQL type names, SELECT body). Column order = the body's order.
# A body may reference other relations defined here; `deps` is computed from the text.
R: dict[str, tuple[list[tuple[str, str]], str]] = {}


def _columns(cols: str) -> list[tuple[str, str]]:
    """"name:type name:type ..." -> [(name, type), ...]"""
    return [(c.partition(":")[0], c.partition(":")[2]) for c in cols.split()]


def _rel(name: str, cols: str, body: str) -> None:
    R[name] = (_columns(cols), body)


def _empty(name: str, cols: str) -> None:
    spec = _columns(cols)
    R[name] = (spec, "SELECT " + ", ".join(f"NULL AS {c}" for c, _ in spec) + " WHERE 0")


_rel("_sq_t", "rid:int8 type:text name:text sql:text", """
SELECT rowid, type, name, sql FROM sqlite_schema
WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite^_%' ESCAPE '^'""")

_rel("_sq_ix", "oid:oid indrelid:oid tname:text relname:name isunique:bool isprimary:bool origin:text "
     "sqlite_name:text partial:bool isql:text nkeys:int2 indkey:int2vector indoption:int2vector zeros:text "
     "cols:text", """
SELECT 16384 + s.rowid, 16384 + t.rid, t.name,
  CASE il.origin WHEN 'pk' THEN t.name || '_pkey'
    WHEN 'u' THEN t.name || '_' || (SELECT group_concat(ii.name, '_' ORDER BY ii.seqno)
                                   FROM pragma_index_info(il.name) ii) || '_key'
    ELSE il.name END,
  il."unique", il.origin = 'pk', il.origin, il.name, il.partial, s.sql,
  (SELECT count(*) FROM pragma_index_info(il.name)),
  (SELECT group_concat(CASE WHEN ii.cid < 0 THEN 0 ELSE ii.cid + 1 END, ' ' ORDER BY ii.seqno)
   FROM pragma_index_info(il.name) ii),
  (SELECT group_concat(CASE WHEN x."desc" THEN 3 ELSE 0 END, ' ' ORDER BY x.seqno)
   FROM pragma_index_xinfo(il.name) x WHERE x.key),
  (SELECT group_concat('0', ' ') FROM pragma_index_info(il.name)),
  (SELECT group_concat(coalesce(x.name, 'expression') || CASE WHEN x."desc" THEN ' DESC' ELSE '' END, ', '
                       ORDER BY x.seqno) FROM pragma_index_xinfo(il.name) x WHERE x.key)
FROM _sq_t t JOIN pragma_index_list(t.name) il JOIN sqlite_schema s ON s.type = 'index' AND s.name = il.name
WHERE t.type = 'table'
UNION ALL
SELECT 2000000 + t.rid, 16384 + t.rid, t.name, t.name || '_pkey', 1, 1, 'pk', NULL, 0, NULL, 1,
  (SELECT cid + 1 FROM pragma_table_info(t.name) WHERE pk > 0), '0', '0',
  (SELECT name FROM pragma_table_info(t.name) WHERE pk > 0)
FROM _sq_t t
WHERE t.type = 'table' AND (SELECT count(*) FROM pragma_table_info(t.name) WHERE pk > 0) = 1
  AND NOT EXISTS (SELECT 1 FROM pragma_index_list(t.name) WHERE origin = 'pk')""")

_CLASS_COLS = ("oid:oid relname:name relnamespace:oid reltype:oid reloftype:oid relowner:oid relam:oid "
               "relfilenode:oid reltablespace:oid relpages:int4 reltuples:float4 relallvisible:int4 "
               "reltoastrelid:oid relhasindex:bool relisshared:bool relpersistence:char relkind:char "
               "relnatts:int2 relchecks:int2 relhasrules:bool relhastriggers:bool relhassubclass:bool "
               "relrowsecurity:bool relforcerowsecurity:bool relispopulated:bool relreplident:char "
               "relispartition:bool relrewrite:oid relfrozenxid:int4 relminmxid:int4 relacl:_text "
               "reloptions:_text relpartbound:text")
_rel("pg_class", _CLASS_COLS, f"""
SELECT 16384 + t.rid, t.name, 2200, 0, 0, 10, CASE t.type WHEN 'table' THEN 2 ELSE 0 END, 16384 + t.rid, 0, 0, -1, 0,
  0, EXISTS (SELECT 1 FROM _sq_ix x WHERE x.indrelid = 16384 + t.rid), 0, 'p',
  CASE t.type WHEN 'table' THEN 'r' ELSE 'v' END, (SELECT count(*) FROM pragma_table_info(t.name)), 0, 0,
  EXISTS (SELECT 1 FROM sqlite_schema g WHERE g.type = 'trigger' AND g.tbl_name = t.name)
    OR EXISTS (SELECT 1 FROM pragma_foreign_key_list(t.name))
    OR EXISTS (SELECT 1 FROM _sq_t o JOIN pragma_foreign_key_list(o.name) k
               WHERE o.type = 'table' AND k."table" = t.name COLLATE NOCASE), 0, 0, 0, 1, 'd', 0, 0,
  0, 0, NULL, CASE WHEN {DUMP} THEN '{{"sqlite_ddl=' || replace(replace(t.sql, '\\', '\\\\'), '"', '\\"') || '"}}' END,
  NULL
FROM _sq_t t
UNION ALL
SELECT x.oid, x.relname, 2200, 0, 0, 10, 403, x.oid, 0, 0, -1, 0, 0, 0, 0, 'p', 'i', x.nkeys, 0, 0, 0, 0, 0, 0,
  1, 'd', 0, 0, 0, 0, NULL, NULL, NULL
FROM _sq_ix x""")

_rel("pg_attribute", "attrelid:oid attname:name atttypid:oid attstattarget:int4 attlen:int2 attnum:int2 "
     "attndims:int4 attcacheoff:int4 atttypmod:int4 attbyval:bool attalign:char attstorage:char "
     "attcompression:char attnotnull:bool atthasdef:bool atthasmissing:bool attidentity:char "
     "attgenerated:char attisdropped:bool attislocal:bool attinhcount:int4 attcollation:oid attacl:_text "
     "attoptions:_text attfdwoptions:_text attmissingval:text _default:text _typname:text", f"""
SELECT 16384 + p.rid, p.name, {affinity_sql('p.type')}, -1, -1, p.cid + 1, 0, -1, -1, 0, 'i',
  CASE WHEN {DUMP} THEN CASE {affinity_sql('p.type')} WHEN 1700 THEN 'm' WHEN 20 THEN 'p' WHEN 701 THEN 'p'
                        WHEN 16 THEN 'p' ELSE 'x' END
       WHEN p.ty = 'numeric' OR p.ty LIKE 'numeric(%' THEN 'm'
       WHEN p.ty IN ({", ".join(repr(t) for t in _PLAIN)}) OR p.ty LIKE 't%time zone' THEN 'p' ELSE 'x' END,
  '', p."notnull" OR p.pk > 0, p.dflt_value IS NOT NULL, 0, '', CASE WHEN p.hidden IN (2, 3) THEN 's' ELSE '' END,
  0, 1, 0, 0, NULL, NULL, NULL, NULL, p.dflt_value, p.ty
FROM (SELECT t.rid, x.*, {declared_sql('x.type')} AS ty FROM _sq_t t JOIN pragma_table_xinfo(t.name) x
      WHERE x.hidden <> 1) p""")

_rel("pg_attrdef", "oid:oid adrelid:oid adnum:int2 adbin:text",
     "SELECT 4000000 + attrelid * 100 + attnum, attrelid, attnum, _default FROM pg_attribute WHERE atthasdef")

_rel("pg_index", "indexrelid:oid indrelid:oid indnatts:int2 indnkeyatts:int2 indisunique:bool "
     "indnullsnotdistinct:bool indisprimary:bool indisexclusion:bool indimmediate:bool indisclustered:bool "
     "indisvalid:bool indcheckxmin:bool indisready:bool indislive:bool indisreplident:bool indkey:int2vector "
     "indcollation:oidvector indclass:oidvector indoption:int2vector indexprs:text indpred:text _indexdef:text", f"""
SELECT x.oid, x.indrelid, x.nkeys, x.nkeys, x.isunique, 0, x.isprimary, 0, 1, 0, 1, 0, 1, 1, 0, x.indkey, x.zeros,
  x.zeros, x.indoption, NULL, NULL,
  CASE WHEN {DUMP} THEN x.isql ELSE
  'CREATE ' || CASE WHEN x.isunique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || x.relname || ' ON public.' || x.tname
  || ' USING btree (' || x.cols || ')'
  || CASE WHEN x.partial THEN substr(x.isql, instr(upper(x.isql), ' WHERE ')) ELSE '' END END
FROM _sq_ix x WHERE x.origin = 'c' OR NOT {DUMP}""")

_FK_ACTION = ("CASE {} WHEN 'RESTRICT' THEN 'r' WHEN 'CASCADE' THEN 'c' WHEN 'SET NULL' THEN 'n' "
              "WHEN 'SET DEFAULT' THEN 'd' ELSE 'a' END")
_rel("pg_constraint", "oid:oid conname:name connamespace:oid contype:char condeferrable:bool condeferred:bool "
     "convalidated:bool conrelid:oid contypid:oid conindid:oid conparentid:oid confrelid:oid confupdtype:char "
     "confdeltype:char confmatchtype:char conislocal:bool coninhcount:int4 connoinherit:bool conkey:_int2 "
     "confkey:_int2 conbin:text _condef:text", f"""
SELECT 3000000 + x.oid, x.relname, 2200, CASE WHEN x.isprimary THEN 'p' ELSE 'u' END, 0, 0, 1, x.indrelid, 0, x.oid,
  0, 0, ' ', ' ', ' ', 1, 0, 1, '{{' || replace(x.indkey, ' ', ',') || '}}', NULL, NULL,
  CASE WHEN x.isprimary THEN 'PRIMARY KEY' ELSE 'UNIQUE' END || ' (' || x.cols || ')'
FROM _sq_ix x WHERE x.origin IN ('pk', 'u') AND NOT {DUMP}
UNION ALL
SELECT 6000000 + 1000 * t.rid + f.id, t.name || '_' || group_concat(f."from", '_' ORDER BY f.seq) || '_fkey', 2200,
  'f', 0, 0, 1, 16384 + t.rid, 0, 0, 0,
  (SELECT 16384 + r.rowid FROM sqlite_schema r WHERE r.type = 'table' AND r.name = f."table" COLLATE NOCASE),
  {_FK_ACTION.format('f.on_update')}, {_FK_ACTION.format('f.on_delete')}, 's', 1, 0, 1,
  '{{' || group_concat((SELECT c.cid + 1 FROM pragma_table_info(t.name) c WHERE c.name = f."from"), ',' ORDER BY f.seq)
  || '}}',
  '{{' || group_concat((SELECT c.cid + 1 FROM pragma_table_info(f."table") c
    WHERE c.name = coalesce(f."to", (SELECT k.name FROM pragma_table_info(f."table") k WHERE k.pk = f.seq + 1))),
    ',' ORDER BY f.seq) || '}}', NULL,
  'FOREIGN KEY (' || group_concat(f."from", ', ' ORDER BY f.seq) || ') REFERENCES ' || f."table" || '('
  || group_concat(coalesce(f."to", (SELECT k.name FROM pragma_table_info(f."table") k WHERE k.pk = f.seq + 1)),
                  ', ' ORDER BY f.seq) || ')'
  || CASE WHEN f.on_update <> 'NO ACTION' THEN ' ON UPDATE ' || f.on_update ELSE '' END
  || CASE WHEN f.on_delete <> 'NO ACTION' THEN ' ON DELETE ' || f.on_delete ELSE '' END
FROM _sq_t t JOIN pragma_foreign_key_list(t.name) f WHERE t.type = 'table' AND NOT {DUMP} GROUP BY t.rid, f.id""")

_rel("pg_type", "oid:oid typname:name typnamespace:oid typowner:oid typlen:int2 typbyval:bool typtype:char "
     "typcategory:char typispreferred:bool typisdefined:bool typdelim:char typrelid:oid typelem:oid "
     "typarray:oid typbasetype:oid typtypmod:int4 typndims:int4 typcollation:oid typnotnull:bool "
     "typdefault:text typstorage:char typacl:_text _format:text", f"""
SELECT column1, column2, 11, 10, column3, column3 BETWEEN 1 AND 8, 'b', column4, 0, 1, ',', 0, column5, column6, 0,
  -1, 0, CASE WHEN column4 = 'S' THEN 100 ELSE 0 END, 0, NULL, CASE WHEN column3 > 0 THEN 'p' WHEN column1 = 1700 THEN 'm' ELSE 'x' END, NULL,
  column7
FROM (VALUES {_type_rows()})""")

_rel("pg_namespace", "oid:oid nspname:name nspowner:oid nspacl:_text",
     "SELECT column1, column2, CASE column1 WHEN 2200 THEN 6171 ELSE 10 END, CASE column1 WHEN 2200 THEN "
     "'{pg_database_owner=UC/pg_database_owner,=U/pg_database_owner}' END FROM (VALUES (11, 'pg_catalog'), "
     "(99, 'pg_toast'), (2200, 'public'), (13000, 'information_schema'))")
_rel("pg_database", "oid:oid datname:name datdba:oid encoding:int4 datlocprovider:char datistemplate:bool "
     "datallowconn:bool datconnlimit:int4 datcollate:text datctype:text daticulocale:text datacl:_text "
     "dattablespace:oid datfrozenxid:int4 datminmxid:int4 datcollversion:text",
     "SELECT 16384 + key, value, 10, 6, 'c', 0, 1, -1, 'C', 'C', NULL, NULL, 1663, 0, 0, NULL "
     "FROM json_each(sqld_databases())")
# The bootstrap superuser (owner of every object), the session's own user when another (the users
# file is the edge's, not the catalog's: a session sees itself), and the schema owner role.
_rel("pg_roles", "oid:oid rolname:name rolsuper:bool rolinherit:bool rolcreaterole:bool rolcreatedb:bool "
     "rolcanlogin:bool rolreplication:bool rolconnlimit:int4 rolpassword:text rolvaliduntil:timestamptz "
     "rolbypassrls:bool rolconfig:_text", """
SELECT 10, 'postgres', 1, 1, 1, 1, 1, 1, -1, '********', NULL, 1, NULL
UNION ALL SELECT 16383, sqld_session_user(), 0, 1, 0, 0, 1, 0, -1, '********', NULL, 0, NULL
  WHERE sqld_session_user() <> 'postgres'
UNION ALL SELECT 6171, 'pg_database_owner', 0, 1, 0, 0, 0, 0, -1, '********', NULL, 0, NULL""")
# No rows here: pg_dump only asks it for restrict_nonsystem_relation_kind. The settings' own view
# (catalog/live.py, where present) replaces this one.
_rel("pg_settings", "name:text setting:text", "SELECT NULL, NULL WHERE 0 = 1")
_empty("pg_auth_members", "roleid:oid member:oid grantor:oid admin_option:bool")
_rel("pg_am", "oid:oid amname:name amhandler:oid amtype:char",
     "SELECT column1, column2, 0, column3 FROM (VALUES (2, 'heap', 't'), (403, 'btree', 'i'))")
_rel("pg_collation", "oid:oid collname:name collnamespace:oid collowner:oid collprovider:char collencoding:int4 "
     "collisdeterministic:bool collcollate:text collctype:text colliculocale:text collversion:text",
     "SELECT 100, 'default', 11, 10, 'd', -1, 1, NULL, NULL, NULL, NULL")
_rel("pg_tablespace", "oid:oid spcname:name spcowner:oid", "SELECT 1663, 'pg_default', 10")
_rel("information_schema_tables", "table_catalog:name table_schema:name table_name:name table_type:text", """
SELECT (SELECT name FROM pragma_database_list WHERE seq = 0), 'public', t.name,
  CASE t.type WHEN 'table' THEN 'BASE TABLE' ELSE 'VIEW' END FROM _sq_t t""")
_rel("information_schema_columns", "table_catalog:name table_schema:name table_name:name column_name:name "
     "ordinal_position:int4 column_default:text is_nullable:text data_type:text", """
SELECT (SELECT name FROM pragma_database_list WHERE seq = 0), 'public', c.relname, a.attname, a.attnum, a._default,
  CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END, (SELECT _format FROM pg_type y WHERE y.oid = a.atttypid)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid""")

_rel("pg_description", "objoid:oid classoid:oid objsubid:int4 description:text",
     "SELECT 2200, 2615, 0, 'standard public schema'")
_empty("pg_shdescription", "objoid:oid classoid:oid description:text")
_empty("pg_inherits", "inhrelid:oid inhparent:oid inhseqno:int4 inhdetachpending:bool")
_empty("pg_policy", "oid:oid polname:name polrelid:oid polcmd:char polpermissive:bool polroles:_oid "
       "polqual:text polwithcheck:text")
_empty("pg_statistic_ext", "oid:oid stxrelid:oid stxname:name stxnamespace:oid stxowner:oid stxstattarget:int4 "
       "stxkeys:int2vector stxkind:_char")
_empty("pg_publication", "oid:oid pubname:name pubowner:oid puballtables:bool pubinsert:bool pubupdate:bool "
       "pubdelete:bool pubtruncate:bool pubviaroot:bool")
_empty("pg_publication_rel", "oid:oid prpubid:oid prrelid:oid prqual:text prattrs:int2vector")
_empty("pg_publication_namespace", "oid:oid pnpubid:oid pnnspid:oid")
_rel("pg_trigger", "oid:oid tgrelid:oid tgname:name tgfoid:oid tgtype:int2 tgenabled:char tgisinternal:bool "
     "tgparentid:oid tgconstraint:oid _def:text", f"""
SELECT 16384 + s.rowid, 16384 + t.rid, s.name, 0, 0, 'O', 0, 0, 0,
  CASE WHEN {DUMP} THEN 'DO LANGUAGE sqlite $sqlite$' || s.sql || '$sqlite$' ELSE s.sql END
FROM sqlite_schema s JOIN _sq_t t ON t.name = s.tbl_name WHERE s.type = 'trigger'""")
_empty("pg_rewrite", "oid:oid rulename:name ev_class:oid ev_type:char ev_enabled:char is_instead:bool")
_empty("pg_sequence", "seqrelid:oid seqtypid:oid seqstart:int8 seqincrement:int8 seqmax:int8 seqmin:int8 "
       "seqcache:int8 seqcycle:bool")
_empty("pg_range", "rngtypid:oid rngsubtype:oid rngmultitypid:oid rngcollation:oid")
_empty("pg_opclass", "oid:oid opcmethod:oid opcname:name opcnamespace:oid opcowner:oid opcfamily:oid opcintype:oid "
       "opcdefault:bool opckeytype:oid")
_empty("pg_proc", "oid:oid proname:name pronamespace:oid proowner:oid prolang:oid prokind:char prorettype:oid "
       "pronargs:int2 proargtypes:oidvector proacl:_text")
_empty("pg_enum", "oid:oid enumtypid:oid enumsortorder:float4 enumlabel:name")
_empty("pg_extension", "oid:oid extname:name extowner:oid extnamespace:oid extrelocatable:bool extversion:text "
       "extconfig:_oid extcondition:_text")
_empty("pg_depend", "classid:oid objid:oid objsubid:int4 refclassid:oid refobjid:oid refobjsubid:int4 deptype:char")
_empty("pg_foreign_table", "ftrelid:oid ftserver:oid")
# Catalogs pg_dump reads that have no rows on SQLite: no languages, operators, casts, text search,
# foreign data, subscriptions, large objects, event triggers or security labels.
for _n, _c in {
    "pg_language": "oid:oid lanname:name lanowner:oid lanispl:bool lanpltrusted:bool lanplcallfoid:oid laninline:oid "
                   "lanvalidator:oid lanacl:_text",
    "pg_operator": "oid:oid oprname:name oprnamespace:oid oprowner:oid oprkind:char oprleft:oid oprright:oid "
                   "oprresult:oid oprcode:oid",
    "pg_opfamily": "oid:oid opfmethod:oid opfname:name opfnamespace:oid opfowner:oid",
    "pg_ts_parser": "oid:oid prsname:name prsnamespace:oid prsstart:oid prstoken:oid prsend:oid prsheadline:oid "
                    "prslextype:oid",
    "pg_ts_template": "oid:oid tmplname:name tmplnamespace:oid tmplinit:oid tmpllexize:oid",
    "pg_ts_dict": "oid:oid dictname:name dictnamespace:oid dictowner:oid dicttemplate:oid dictinitoption:text",
    "pg_ts_config": "oid:oid cfgname:name cfgnamespace:oid cfgowner:oid cfgparser:oid",
    "pg_foreign_data_wrapper": "oid:oid fdwname:name fdwowner:oid fdwhandler:oid fdwvalidator:oid fdwacl:_text "
                               "fdwoptions:_text",
    "pg_foreign_server": "oid:oid srvname:name srvowner:oid srvfdw:oid srvtype:text srvversion:text srvacl:_text "
                         "srvoptions:_text",
    "pg_default_acl": "oid:oid defaclrole:oid defaclnamespace:oid defaclobjtype:char defaclacl:_text",
    "pg_conversion": "oid:oid conname:name connamespace:oid conowner:oid conforencoding:int4 contoencoding:int4 "
                     "conproc:oid condefault:bool",
    "pg_cast": "oid:oid castsource:oid casttarget:oid castfunc:oid castcontext:char castmethod:char",
    "pg_transform": "oid:oid trftype:oid trflang:oid trffromsql:oid trftosql:oid",
    "pg_event_trigger": "oid:oid evtname:name evtevent:name evtowner:oid evtfoid:oid evtenabled:char evttags:_text",
    "pg_subscription": "oid:oid subdbid:oid subname:name subowner:oid subenabled:bool subbinary:bool substream:char "
                       "subtwophasestate:char subdisableonerr:bool subconninfo:text subslotname:name "
                       "subsynccommit:text subpublications:_text",
    "pg_largeobject_metadata": "oid:oid lomowner:oid lomacl:_text",
    "pg_init_privs": "objoid:oid classoid:oid objsubid:int4 privtype:char initprivs:_text",
    "pg_seclabels": "objoid:oid classoid:oid objsubid:int4 objtype:text objnamespace:oid objname:text "
                    "provider:text label:text",
    "pg_aggregate": "aggfnoid:oid aggkind:char aggnumdirectargs:int2",
    "pg_db_role_setting": "setdatabase:oid setrole:oid setconfig:_text",
}.items():
    _empty(_n, _c)

# tableoid, the OID of the catalog a row is in (pg_dump reads it with every object)
TABLEOIDS = {"pg_class": 1259, "pg_namespace": 2615, "pg_type": 1247, "pg_proc": 1255, "pg_constraint": 2606,
             "pg_attrdef": 2604, "pg_trigger": 2620, "pg_rewrite": 2618, "pg_extension": 3079,
             "pg_collation": 3456, "pg_am": 2601, "pg_database": 1262, "pg_language": 2612, "pg_operator": 2617,
             "pg_opclass": 2616, "pg_opfamily": 2753, "pg_cast": 2605, "pg_conversion": 2607,
             "pg_ts_parser": 3601, "pg_ts_template": 3764, "pg_ts_dict": 3600, "pg_ts_config": 3602,
             "pg_foreign_data_wrapper": 2328, "pg_foreign_server": 1417, "pg_default_acl": 826,
             "pg_transform": 3576, "pg_event_trigger": 3466, "pg_subscription": 6100, "pg_publication": 6104,
             "pg_publication_rel": 6106, "pg_publication_namespace": 6237, "pg_policy": 3256,
             "pg_statistic_ext": 3381, "pg_index": 2610}
for _n, _oid in TABLEOIDS.items():
    _cols, _body = R[_n]
    R[_n] = (_cols + [("tableoid", "oid")], _body.replace(" WHERE 0", f", {_oid} WHERE 0") if _body.endswith(" WHERE 0")
             else f"SELECT *, {_oid} FROM ({_body})")
_empty("pg_partitioned_table", "partrelid:oid partstrat:char")
for _n, _body in {"_lk_format": "SELECT oid, _format FROM pg_type", "_lk_user": "SELECT oid, rolname FROM pg_roles",
                  "_lk_indexdef": "SELECT indexrelid, _indexdef FROM pg_index",
                  "_lk_condef": "SELECT oid, _condef FROM pg_constraint",
                  "_lk_trigdef": "SELECT oid, _def FROM pg_trigger",
                  "_lk_typeoid": "SELECT typname, oid FROM pg_type UNION ALL SELECT _format, oid FROM pg_type",
                  "_lk_relname": "SELECT oid, relname FROM pg_class", "_lk_reloid": "SELECT relname, oid FROM pg_class",
                  "_lk_nsp": "SELECT oid, nspname FROM pg_namespace",
                  "_lk_sqname": "SELECT 16384 + rowid, name FROM sqlite_schema"}.items():
    _rel(_n, "_k:text _v:text", _body)
R["pg_authid"] = R["pg_roles"]
R["pg_user"] = ([("usename", "name"), ("usesysid", "oid")], "SELECT rolname, oid FROM pg_roles")

EMPTY = {name for name, (_, body) in R.items() if body.endswith("WHERE 0")}

# Column name -> PostgreSQL type name, over every relation (first definition wins).
COLUMN_TYPES: dict[str, str] = {}
for _name, (_cols, _body) in R.items():
    for _c, _t in _cols:
        COLUMN_TYPES.setdefault(_c, _t)
