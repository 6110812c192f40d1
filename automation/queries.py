"""The named statements of the hot path, in one place (like procrastinate's ``queries.sql``).

Each function here is one statement (or, where SQLite cannot say it in one, the few it
needs, side by side), named for what it does and described by its docstring; the
services call them by name and keep the rules (guards, outcomes, what to settle).

On PostgreSQL a unit of work is one round trip: data-modifying CTEs write the run, its
``RunEvent`` and its messages together, so outside an explicit transaction each statement
is its own atomic transaction. SQLite has no data-modifying CTEs: its forms run the same
writes as a few statements inside one transaction.

Rows are written with the columns and values Django itself would write (defaults,
``auto_now_add``, JSON and UUID adaptation), taken from the model instances, so a field
added to a model needs no change here.
"""

import functools
import hashlib
import json
import re
import weakref
from collections.abc import Iterable

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, models, transaction

from agentpress.agents.models import Message
from automation.models import AgentRun, ModelCall, ProviderEvent, RunEvent
from automation.states import RUN_ACTIVE, RunStatus

# --- statements planned once per connection ------------------------------------------------
#
# Django sends every statement as text with its values in it (client-side binding), so
# PostgreSQL parses and plans it on every call. For the large statements of a run's path
# (the claim's fair-order read, the claim, the completion) planning cost more than running:
# 1.8 ms of the 2.8 ms the database spent per run, and more under load. ``planned`` turns
# such a statement into ``EXECUTE`` of a statement the connection prepared once (SQL
# ``PREPARE``, kept by the session until it closes, whatever its transactions do), with the
# values passed as before; PostgreSQL then plans it at most a few times per connection.
# ``AUTOMATION_PREPARED_STATEMENTS = False`` sends the text as before: for a PgBouncer in
# ``pool_mode = transaction``, where a session's prepared statements do not follow it.

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s|%%")
_PREPARED_ON: "weakref.WeakKeyDictionary[object, set[str]]" = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=512)
def _prepared_form(sql: str) -> tuple[str, str, tuple]:
    """(name, the ``PREPARE`` body with ``$n`` parameters, the parameters in ``$n`` order:
    names for a statement with ``%(name)s`` placeholders, else their positions)."""
    order: list = []

    def number(match: re.Match) -> str:
        if match.group(0) == "%%":
            return "%"
        key = match.group(1) if match.group(1) is not None else len(order)
        if key not in order:
            order.append(key)
        return f"${order.index(key) + 1}"

    body = _PLACEHOLDER.sub(number, sql)
    return "ap_" + hashlib.blake2b(body.encode(), digest_size=8).hexdigest(), body, tuple(order)


def planned(sql: str, params, *, name: str):
    """``(sql, params)`` to run in place of ``sql`` with ``params`` (a list for ``%s``
    placeholders, a dict for ``%(name)s``): on PostgreSQL, ``EXECUTE`` of the statement this
    connection prepared (preparing it first when it has not), commented with ``name``;
    elsewhere, or with prepared statements off, ``sql`` and ``params`` unchanged. The
    ``PREPARE`` is the connection's own set-up, like its time zone: it goes once per
    connection and statement, outside the statements a caller counts."""
    if connection.vendor != "postgresql" or not settings.AUTOMATION_PREPARED_STATEMENTS:
        return sql, params
    key, body, order = _prepared_form(sql)
    connection.ensure_connection()
    raw = connection.connection
    done = _PREPARED_ON.setdefault(raw, set())
    if key not in done:
        raw.execute(f"PREPARE {key} AS {body}")
        done.add(key)
    if isinstance(params, dict):
        values = ", ".join(f"%({k})s" for k in order)
    else:
        values = ", ".join(["%s"] * len(order))
    return (f"EXECUTE {key}({values}) /* {name} */" if order else f"EXECUTE {key} /* {name} */"), params


@functools.cache
def _layout(model: type[models.Model], vendor: str) -> tuple[tuple[models.Field, str, str], ...]:
    """Each concrete field of ``model`` with its quoted column and its placeholder (typed on
    PostgreSQL), worked out once per model: a batch of rows pays for it once, not per cell."""
    db = connections[DEFAULT_DB_ALIAS]
    return tuple(
        (
            field,
            db.ops.quote_name(field.column),
            f"CAST(%s AS {field.db_type(db)})" if vendor == "postgresql" else "%s",
        )
        for field in model._meta.local_concrete_fields
    )


def _row(obj: models.Model) -> tuple[list[str], list[str], list]:
    """Columns, placeholders (typed on PostgreSQL) and parameters of ``obj`` as an INSERT row."""
    db = connections[DEFAULT_DB_ALIAS]
    columns, placeholders, params = [], [], []
    for field, column, placeholder in _layout(type(obj), db.vendor):
        if field.primary_key and getattr(obj, field.attname) is None:
            continue  # a serial key: the database numbers the row
        columns.append(column)
        placeholders.append(placeholder)
        params.append(field.get_db_prep_save(field.pre_save(obj, add=True), db))
    return columns, placeholders, params


def _loaded(obj: models.Model) -> models.Model:
    """Mark an instance written by a statement here as a stored row."""
    obj._state.adding = False
    obj._state.db = connection.alias
    return obj


def _insert_sql(obj: models.Model, *, replace: dict[str, str] | None = None) -> tuple[str, list]:
    """``INSERT INTO <table> (…) VALUES (…)``; ``replace`` puts SQL in place of a column's value."""
    columns, placeholders, params = _row(obj)
    kept = []
    for n, column in enumerate(columns):
        name = column.strip('"')
        if replace and name in replace:
            placeholders[n] = replace[name]
        else:
            kept.append(params[n])
    table = connection.ops.quote_name(obj._meta.db_table)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(placeholders)})", kept


def _select_row_sql(obj: models.Model, source: str) -> tuple[str, list]:
    """``INSERT INTO <table> (…) SELECT <values> FROM <source>``: written only when ``source``
    (a CTE of this statement) yielded a row."""
    columns, placeholders, params = _row(obj)
    table = connection.ops.quote_name(obj._meta.db_table)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(placeholders)} FROM {source}",
        params,
    )


# --- create a run ------------------------------------------------------------------------------


def insert_run(new) -> AgentRun:
    """Store a new pending run (``runs.NewRun``) with its ``created`` event and its prompt
    message, and its thread when that is new. One statement on PostgreSQL; nothing is
    stored when the database refuses the run (``IntegrityError``: a busy context or a taken
    slot). The run's id is known already (a UUID); a new thread's comes from the database.
    """
    if connection.vendor != "postgresql":
        return _insert_run_sqlite(new)
    parts, params = [], []
    fresh = new.thread._state.adding
    refer = None
    if fresh:
        sql, values = _insert_sql(new.thread)
        parts.append(f"thread AS ({sql} RETURNING id)")
        params += values
        refer = {"thread_id": "(SELECT id FROM thread)"}
    for n, obj in enumerate((new.run, new.event, *new.history, new.prompt)):
        sql, values = _insert_sql(obj, replace=refer if obj is not new.event else None)
        parts.append(f"w{n} AS ({sql})")
        params += values
    final = "SELECT id FROM thread" if fresh else "SELECT NULL"
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} {final}", params)
        (thread_id,) = cursor.fetchone()
    if fresh:
        new.thread.pk = thread_id
        _share_thread(new)
    for obj in (new.thread, new.run, new.event, *new.history, new.prompt):
        _loaded(obj)
    return new.run


def _share_thread(new) -> None:
    new.run.thread = new.prompt.thread = new.thread
    for message in new.history:
        message.thread = new.thread


def _insert_run_sqlite(new) -> AgentRun:
    with transaction.atomic():
        if new.thread._state.adding:
            new.thread.save(force_insert=True)
            _share_thread(new)
        new.run.save(force_insert=True)
        new.event.save(force_insert=True)
        for obj in (*new.history, new.prompt):
            obj.save(force_insert=True)
    return new.run


def insert_runs(batch) -> set:
    """Store a batch of new runs (``runs.NewRun``: run, event, prompt, thread), each with its
    new thread, ``created`` event and prompt message, in two statements on PostgreSQL: the
    thread ids are drawn first, then one statement writes every row. A run the database
    refuses (``ON CONFLICT DO NOTHING``: its slot is taken or its context busy) is skipped
    with its thread, event and message. Returns the ids of the runs stored."""
    if connection.vendor != "postgresql":
        return _insert_runs_sqlite(batch)
    fresh = [new for new in batch if new.thread._state.adding]
    numbered = [new for new in fresh if new.thread.pk is None]
    if numbered:
        for new, thread_id in zip(numbered, thread_ids(len(numbered)), strict=True):
            new.thread.pk = thread_id
    for new in fresh:
        _share_thread(new)
    runs_sql, params = _insert_many_sql([new.run for new in batch])
    parts = [f"run AS ({runs_sql} ON CONFLICT DO NOTHING RETURNING id)"]
    for name, rows in (
        ("thread", [(new.run.pk, new.thread) for new in fresh]),
        ("event", [(new.run.pk, new.event) for new in batch]),
        ("history", [(new.run.pk, message) for new in batch for message in new.history]),
        ("prompt", [(new.run.pk, new.prompt) for new in batch]),
    ):
        if rows:
            sql, values = _insert_for_runs_sql(rows, "run")
            parts.append(f"{name} AS ({sql})")
            params += values
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT id FROM run", params)
        stored = {row[0] for row in cursor.fetchall()}
    for new in batch:
        if new.run.pk in stored:
            for obj in (new.run, new.event, *new.history, new.prompt, new.thread):
                _loaded(obj)
    return stored


def thread_ids(count: int) -> list[int]:
    """Draw ``count`` ids for new threads from their sequence, so that the rows that refer to
    a thread can be written in the same statement as the thread."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('agents_thread', 'id')) FROM generate_series(1, %s)",
            [count],
        )
        return [row[0] for row in cursor.fetchall()]


def _insert_runs_sqlite(batch) -> set:
    stored = set()
    for new in batch:
        try:
            with transaction.atomic():
                _insert_run_sqlite(new)
        except IntegrityError:
            continue
        stored.add(new.run.pk)
    return stored


def _column_arrays(objs: list[models.Model]) -> tuple[list[str], list[str], list[list]]:
    """The quoted columns of a batch of instances of one model, each column's array cast and
    its values as one list per column (PostgreSQL): a batch is written with one parameter
    per column, whatever its size, so the statement's text is the same for every batch."""
    db = connections[DEFAULT_DB_ALIAS]
    layout = [
        (field, column)
        for field, column, _ in _layout(type(objs[0]), db.vendor)
        if not (field.primary_key and getattr(objs[0], field.attname) is None)  # serial: numbered there
    ]
    values = [[] for _ in layout]
    for obj in objs:
        for cells, (field, _) in zip(values, layout, strict=True):
            cells.append(field.get_db_prep_save(field.pre_save(obj, add=True), db))
    arrays = [f"CAST(%s AS {field.db_type(db)}[])" for field, _ in layout]
    return [column for _, column in layout], arrays, values


def _insert_many_sql(objs: list[models.Model]) -> tuple[str, list]:
    """One ``INSERT … SELECT … FROM unnest(…)`` of instances of one model."""
    columns, arrays, values = _column_arrays(objs)
    table = connection.ops.quote_name(objs[0]._meta.db_table)
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({', '.join(arrays)})", values


def _insert_for_runs_sql(rows: list[tuple[object, models.Model]], source: str) -> tuple[str, list]:
    """``INSERT … SELECT`` of instances of one model, each written only when its run (the
    first item of its pair) is among the ids ``source`` (a CTE of this statement) returned."""
    columns, arrays, values = _column_arrays([obj for _, obj in rows])
    names = [f"c{n}" for n in range(len(columns))]
    table = connection.ops.quote_name(rows[0][1]._meta.db_table)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(f'v.{n}' for n in names)} "
        f"FROM unnest(CAST(%s AS uuid[]), {', '.join(arrays)}) AS v(run_id, {', '.join(names)}) "
        f"JOIN {source} ON {source}.id = v.run_id",
        [[run_id for run_id, _ in rows], *values],
    )


# --- store a delivery and start or defer it ---------------------------------------------------


def count_repeated_delivery(*, action_id, event_id: str):
    """Count one more delivery of an event already stored for the action and return its row
    (``ProviderEvent``), or ``None`` for an event not seen before. One statement, both
    databases (``UPDATE … RETURNING``): a repeated delivery costs nothing more."""
    columns = ", ".join(connection.ops.quote_name(f.column) for f in ProviderEvent._meta.concrete_fields)
    action = ProviderEvent._meta.get_field("action").get_db_prep_save(action_id, connection)
    rows = ProviderEvent.objects.raw(
        "UPDATE provider_events SET delivery_count = delivery_count + 1 "
        f"WHERE action_id = %s AND event_id = %s RETURNING {columns}",
        [action, event_id],
    )
    return next(iter(rows), None)


def context_state(*, agent_id, run_as_id, context_type: str, context_key: str) -> tuple[object, int | None]:
    """In one query: the oldest active run on the context of one run-as user (its id, or
    ``None``) and that user's latest thread of the agent on it (its id, or ``None`` for a new
    context). A context is one user's work (``automation.scope``)."""
    if not context_key:
        return None, None
    key = [agent_id, run_as_id, context_type, context_key]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT id FROM agent_runs WHERE agent_id = %s AND run_as_id = %s AND context_type = %s"
            f"  AND context_key = %s AND status IN ({', '.join(['%s'] * len(RUN_ACTIVE))})"
            "  ORDER BY created_at LIMIT 1),"
            " (SELECT id FROM agents_thread WHERE agent_id = %s AND run_as_id = %s AND context_type = %s"
            "  AND context_key = %s ORDER BY created_at DESC, id DESC LIMIT 1)",
            [*key, *RUN_ACTIVE, *key],
        )
        active_id, thread_id = cursor.fetchone()
    if active_id is not None and connection.vendor != "postgresql":
        active_id = AgentRun._meta.pk.to_python(active_id)
    return active_id, thread_id


# --- move a batch of schedules on ---------------------------------------------------------------


def update_rows(objs: list[models.Model], fields: list[str]) -> None:
    """Write ``fields`` of each instance (the values it holds) to its row, for a batch of
    rows of one model in one statement: ``UPDATE … FROM unnest(…)`` on PostgreSQL (one
    array per column), Django's ``bulk_update`` (one ``CASE`` per field) on SQLite."""
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objs, fields)
        return
    quote = connection.ops.quote_name
    meta = model._meta
    pk = meta.pk
    targets = [pk, *(meta.get_field(name) for name in fields)]
    arrays = [f"CAST(%s AS {field.db_type(connection)}[])" for field in targets]
    values = [
        [field.get_db_prep_save(getattr(obj, field.attname), connection) for obj in objs] for field in targets
    ]
    names = ["pk", *(f"c{n}" for n in range(len(fields)))]
    assignments = ", ".join(f"{quote(f.column)} = v.c{n}" for n, f in enumerate(targets[1:]))
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "
        f"FROM unnest({', '.join(arrays)}) AS v({', '.join(names)}) WHERE t.{quote(pk.column)} = v.pk"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)


# --- record a model call ----------------------------------------------------------------------


def record_model_call(call: ModelCall) -> None:
    """Insert ``call`` and add its tokens and cost to its run's totals: one statement on
    PostgreSQL (the insert in a CTE), so the totals are always the sum of the run's calls."""
    if connection.vendor != "postgresql":
        with transaction.atomic():
            call.save(force_insert=True)
            AgentRun.objects.filter(pk=call.run_id).update(
                input_tokens=models.F("input_tokens") + call.input_tokens,
                output_tokens=models.F("output_tokens") + call.output_tokens,
                cost=models.F("cost") + call.cost,
            )
        return
    insert, params = _insert_sql(call)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH call AS ({insert} RETURNING run_id, input_tokens, output_tokens, cost)"
            " UPDATE agent_runs SET input_tokens = agent_runs.input_tokens + call.input_tokens,"
            " output_tokens = agent_runs.output_tokens + call.output_tokens, cost = agent_runs.cost + call.cost"
            " FROM call WHERE agent_runs.id = call.run_id",
            params,
        )


# --- complete or fail a run --------------------------------------------------------------------


# The claimed run comes back with these, as ``select_related`` would load them (the worker
# reads the agent's runtime, the organization's slug for logs and metrics, the thread).
CLAIM_LOADS = ("agent", "thread", "organization")


def start_run(*, run_id, allowed, fields: dict, event: RunEvent) -> tuple[AgentRun, list[dict]] | None:
    """The claim's guarded ``UPDATE`` (``fields`` holds ``running`` and the new lease) where the
    run's status is in ``allowed``, with its ``claimed`` event: the run as it now is, with its
    ``CLAIM_LOADS``, and the conversation so far (``thread_history``, what its agent is
    given). One statement on PostgreSQL (the row comes back from ``RETURNING``, the history
    from a subquery); ``None`` (nothing written) when another claim, a cancel or a sweep got
    there first."""
    if connection.vendor != "postgresql":
        with transaction.atomic():
            if AgentRun.objects.filter(pk=run_id, status__in=allowed).update(**fields) != 1:
                return None
            event.save(force_insert=True)
            run = AgentRun.objects.select_related(*CLAIM_LOADS).get(pk=run_id)
        return run, thread_history(thread_id=run.thread_id, run_id=run.pk)
    row = _guarded_update(
        run_id=run_id,
        allowed=allowed,
        lease_token=None,
        fields=fields,
        rows=[event],
        returning=_claim_returning(),
        name="queries.start_run",
    )
    if row is None:
        return None
    return _claimed_from_row(row[:-1]), json.loads(row[-1])


def thread_history(*, thread_id, run_id) -> list[dict]:
    """The messages of a run's thread that other runs wrote, oldest first, as the agent is
    given them (``role``, ``content``)."""
    rows = Message.objects.filter(thread_id=thread_id).exclude(run_id=run_id).order_by("created_at", "id")
    return [{"role": role, "content": content} for role, content in rows.values_list("role", "content")]


@functools.cache
def _history_sql() -> str:
    """``thread_history`` of the run in ``changed``, as one JSON text (PostgreSQL)."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    column = {
        name: quote(Message._meta.get_field(name).column) for name in ("thread", "run", "role", "content")
    }
    return (
        "SELECT COALESCE(json_agg(json_build_object('role', m.{role}, 'content', m.{content})"
        " ORDER BY m.created_at, m.id), '[]'::json)::text"
        " FROM {table} m WHERE m.{thread} = changed.thread_id AND m.{run} IS DISTINCT FROM changed.id"
    ).format(table=quote(Message._meta.db_table), **column)


@functools.cache
def _claim_returning() -> tuple[str, str]:
    """What the claim's ``UPDATE`` returns (every column of the run), and its final
    ``SELECT``: the updated row (``changed``) joined to its ``CLAIM_LOADS``, then the
    thread's history. Worked out once per process."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    joins, columns = [], ["changed.*"]
    for n, name in enumerate(CLAIM_LOADS):
        field = AgentRun._meta.get_field(name)
        related = field.related_model
        alias = f"l{n}"
        joins.append(
            f"JOIN {quote(related._meta.db_table)} {alias} "
            f"ON {alias}.{quote(field.target_field.column)} = changed.{quote(field.column)}"
        )
        columns += _columns(related, alias)
    select = f"SELECT {', '.join(columns)}, ({_history_sql()}) FROM changed {' '.join(joins)}"
    return ", ".join(_columns(AgentRun, "agent_runs")), select


def _columns(model: type[models.Model], alias: str) -> list[str]:
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return [f"{alias}.{quote(f.column)}" for f in model._meta.concrete_fields]


@functools.cache
def _converters(model: type[models.Model]) -> tuple[tuple[str, models.Field, list], ...]:
    """Each concrete field's attribute name and the converters Django applies to its value
    when it reads the column (JSON, decimals, time zones)."""
    db = connections[DEFAULT_DB_ALIAS]
    out = []
    for field in model._meta.concrete_fields:
        col = field.get_col(model._meta.db_table)
        out.append((field.attname, col, db.ops.get_db_converters(col) + field.get_db_converters(db)))
    return tuple(out)


def _from_row(model: type[models.Model], values) -> models.Model:
    db = connections[DEFAULT_DB_ALIAS]
    names, converted = [], []
    for (name, col, converters), value in zip(_converters(model), values, strict=True):
        for convert in converters:
            value = convert(value, col, db)
        names.append(name)
        converted.append(value)
    return model.from_db(db.alias, names, converted)


def _claimed_from_row(row) -> AgentRun:
    """The run and its ``CLAIM_LOADS`` from one row of ``start_run``, as ``select_related``
    would have built them."""
    width = len(AgentRun._meta.concrete_fields)
    run = _from_row(AgentRun, row[:width])
    offset = width
    for name in CLAIM_LOADS:
        related = AgentRun._meta.get_field(name).related_model
        size = len(related._meta.concrete_fields)
        setattr(run, name, _from_row(related, row[offset : offset + size]))
        offset += size
    return run


def _guarded_update(
    *, run_id, allowed, lease_token, fields: dict, rows, returning=None, tail_params=(), name: str
):
    """``UPDATE agent_runs SET <fields>`` of one run whose status is in ``allowed`` (and whose
    lease is ``lease_token``, unless that is ``None``), writing ``rows`` only when it matched.
    Whether it matched; or, with ``returning`` (the columns the update returns, and the
    statement's final ``SELECT`` over ``changed``, whose own parameters are ``tail_params``),
    the row that ``SELECT`` reads, or ``None``. ``name`` names the statement (``planned``)."""
    assignments, params = [], []
    for attribute, value in fields.items():
        field = AgentRun._meta.get_field(attribute)
        assignments.append(f"{connection.ops.quote_name(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    guard = "id = %s AND status = ANY(%s)"
    params += [run_id, list(allowed)]
    if lease_token is not None:
        guard += " AND lease_token = %s"
        params.append(lease_token)
    columns, select = returning or ("id", "SELECT count(*) FROM changed")
    parts = [f"changed AS (UPDATE agent_runs SET {', '.join(assignments)} WHERE {guard} RETURNING {columns})"]
    for n, obj in enumerate(rows):
        sql, values = _select_row_sql(obj, "changed")
        parts.append(f"w{n} AS ({sql})")
        params += values
    with connection.cursor() as cursor:
        cursor.execute(*planned(f"WITH {', '.join(parts)} {select}", [*params, *tail_params], name=name))
        row = cursor.fetchone()
    if returning is not None:
        return row
    return row[0] == 1


def finish_run(
    *, run: AgentRun, lease_token, allowed, fields: dict, event: RunEvent, messages: Iterable[Message] = ()
) -> bool:
    """The guarded ``UPDATE`` of a run's end (``fields`` holds the new status, and the run's
    usage totals when ``messages`` holds model-call rows) where its status is in ``allowed``
    and ``lease_token`` still holds the lease, with the run's closing event and the rows in
    ``messages`` (the agent's messages, model-call rows). One statement on PostgreSQL.
    ``False`` (nothing written) when the guard matched no row: the run was cancelled or
    recovered meanwhile."""
    if connection.vendor != "postgresql":
        return _finish_run_sqlite(
            run=run, lease_token=lease_token, fields=fields, allowed=allowed, event=event, messages=messages
        )
    return _guarded_update(
        run_id=run.pk,
        allowed=allowed,
        lease_token=lease_token,
        fields=fields,
        rows=[event, *messages],
        name="queries.finish_run",
    )


def finish_run_and_ask(
    *,
    run: AgentRun,
    lease_token,
    allowed,
    fields: dict,
    event: RunEvent,
    messages: Iterable[Message] = (),
    now,
    budget_phrase: str,
) -> tuple[bool, bool | None]:
    """``finish_run``, whose statement also reads ``claimable_work_waits`` (``now`` and
    ``budget_phrase`` as there): whether the run ended, and, when it did, whether any run is
    claimable (``None`` when not read: SQLite, or the run did not end). The worker asks that
    right after a run ends; reading it with the end saves a round trip and a statement on
    every run's path. The read sees what was committed when the statement began; a run
    stored after that has a message of its own."""
    if connection.vendor != "postgresql":
        ended = _finish_run_sqlite(
            run=run, lease_token=lease_token, fields=fields, allowed=allowed, event=event, messages=messages
        )
        return ended, None
    claimable, claimable_params = _claimable_sql(now=now, budget_phrase=budget_phrase)
    matched, waits = _guarded_update(
        run_id=run.pk,
        allowed=allowed,
        lease_token=lease_token,
        fields=fields,
        rows=[event, *messages],
        returning=("id", f"SELECT (SELECT count(*) FROM changed), EXISTS ({claimable})"),
        tail_params=claimable_params,
        name="queries.finish_run_and_ask",
    )
    ended = matched == 1
    return ended, (waits if ended else None)


def _finish_run_sqlite(*, run, lease_token, fields, allowed, event, messages) -> bool:
    with transaction.atomic():
        guard = models.Q(pk=run.pk, status__in=allowed, lease_token=lease_token)
        if AgentRun.objects.filter(guard).update(**fields) != 1:
            return False
        event.save(force_insert=True)
        rows = list(messages)
        for model in {type(row) for row in rows}:
            model.objects.bulk_create([row for row in rows if type(row) is model])
    return True


def claimable_work_waits(*, now, budget_phrase: str) -> bool:
    """Whether any run is pending and due (``not_before`` passed) and not held by a daily
    budget (its waiting reason starts with ``budget_phrase``): one read of the partial index
    ``agent_runs_pending_due``, asked after each run ends. Written out, not compiled by the
    ORM per call: it is on every run's path."""
    sql, params = _claimable_sql(now=now, budget_phrase=budget_phrase)
    with connection.cursor() as cursor:
        cursor.execute(*planned(sql, params, name="queries.claimable_work_waits"))
        return cursor.fetchone() is not None


def _claimable_sql(*, now, budget_phrase: str) -> tuple[str, list]:
    return (
        # the status is written in, not passed: a prepared statement's plan for any status
        # could not use the partial index of pending runs
        f"SELECT 1 FROM {connection.ops.quote_name(AgentRun._meta.db_table)}"
        f" WHERE status = '{RunStatus.PENDING}' AND (not_before IS NULL OR not_before <= %s)"
        " AND NOT (waiting_reason LIKE %s ESCAPE '\\') LIMIT 1",
        [now, f"{connection.ops.prep_for_like_query(budget_phrase)}%"],
    )
