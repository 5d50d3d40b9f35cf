"""The SQLite index of the local archive: schema, inserts and the browser's queries.

One row per patient, study, series and instance.  ``studies.modalities`` and the instance/series counts
are kept denormalised (refreshed after each import for the studies it touched) so the browser's
query is a plain indexed select, even with many thousands of studies.

Text matching follows the browser's rules: ``*`` and ``?`` are wildcards matching the whole value;
plain text matches anywhere in the value.  Both are case-insensitive (Unicode casefold), and ``^``
(the DICOM person-name separator) matches a space so "doe john" finds "DOE^JOHN".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from workstation.archive.client import StudyQuery
from workstation.model.refs import SeriesRef, StudyRef

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    patient_key   INTEGER PRIMARY KEY,
    patient_id    TEXT NOT NULL DEFAULT '',
    patient_name  TEXT NOT NULL DEFAULT '',
    birth_date    TEXT NOT NULL DEFAULT '',
    sex           TEXT NOT NULL DEFAULT '',
    UNIQUE (patient_id, patient_name)
);
CREATE TABLE IF NOT EXISTS studies (
    study_uid     TEXT PRIMARY KEY,
    patient_key   INTEGER NOT NULL REFERENCES patients(patient_key),
    study_date    TEXT NOT NULL DEFAULT '',
    study_time    TEXT NOT NULL DEFAULT '',
    accession     TEXT NOT NULL DEFAULT '',
    description   TEXT NOT NULL DEFAULT '',
    modalities    TEXT NOT NULL DEFAULT '',   -- backslash-separated, sorted (like ModalitiesInStudy)
    num_series    INTEGER NOT NULL DEFAULT 0,
    num_instances INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS series (
    series_uid    TEXT PRIMARY KEY,
    study_uid     TEXT NOT NULL REFERENCES studies(study_uid),
    series_number INTEGER,
    description   TEXT NOT NULL DEFAULT '',
    modality      TEXT NOT NULL DEFAULT '',
    body_part     TEXT NOT NULL DEFAULT '',
    num_instances INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid         TEXT PRIMARY KEY,
    series_uid      TEXT NOT NULL REFERENCES series(series_uid),
    instance_number INTEGER,
    sop_class       TEXT NOT NULL DEFAULT '',
    transfer_syntax TEXT NOT NULL DEFAULT '',
    path            TEXT NOT NULL,            -- relative to the archive root
    size            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_key);
CREATE INDEX IF NOT EXISTS studies_date ON studies(study_date);
CREATE INDEX IF NOT EXISTS series_study ON series(study_uid);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
"""


@dataclass(frozen=True)
class InstanceRow:
    """What the index records of one stored file (attributes read from its header)."""

    sop_uid: str
    series_uid: str
    study_uid: str
    path: str  # relative to the archive root
    size: int
    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""
    sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession: str = ""
    study_description: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = ""
    body_part: str = ""
    instance_number: int | None = None
    sop_class: str = ""
    transfer_syntax: str = ""


def connect(path: str) -> sqlite3.Connection:
    """Open the index with the settings every connection needs (WAL, foreign keys, casefold)."""
    # isolation_level=None: we issue BEGIN/COMMIT ourselves so a write is one explicit transaction
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes, fast
    conn.execute("PRAGMA foreign_keys=ON")
    conn.create_function("casefold", 1, _casefold, deterministic=True)
    return conn


def _casefold(value: object) -> str:
    return "" if value is None else str(value).replace("^", " ").casefold().strip()


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def has_instance(conn: sqlite3.Connection, sop_uid: str) -> bool:
    return conn.execute("SELECT 1 FROM instances WHERE sop_uid=?", (sop_uid,)).fetchone() is not None


def insert_instance(conn: sqlite3.Connection, row: InstanceRow) -> None:
    """Insert one instance and, when new, its patient, study and series (the first file's values win)."""
    conn.execute(
        "INSERT OR IGNORE INTO patients(patient_id, patient_name, birth_date, sex) VALUES (?,?,?,?)",
        (row.patient_id, row.patient_name, row.birth_date, row.sex),
    )
    (pkey,) = conn.execute(
        "SELECT patient_key FROM patients WHERE patient_id=? AND patient_name=?", (row.patient_id, row.patient_name)
    ).fetchone()
    conn.execute(
        "INSERT OR IGNORE INTO studies(study_uid, patient_key, study_date, study_time, accession, description)"
        " VALUES (?,?,?,?,?,?)",
        (row.study_uid, pkey, row.study_date, row.study_time, row.accession, row.study_description),
    )
    conn.execute(
        "INSERT OR IGNORE INTO series(series_uid, study_uid, series_number, description, modality, body_part)"
        " VALUES (?,?,?,?,?,?)",
        (row.series_uid, row.study_uid, row.series_number, row.series_description, row.modality, row.body_part),
    )
    conn.execute(
        "INSERT INTO instances(sop_uid, series_uid, instance_number, sop_class, transfer_syntax, path, size)"
        " VALUES (?,?,?,?,?,?,?)",
        (row.sop_uid, row.series_uid, row.instance_number, row.sop_class, row.transfer_syntax, row.path, row.size),
    )


def refresh_counts(conn: sqlite3.Connection, study_uids: Iterable[str]) -> None:
    """Recompute the denormalised counts and modalities of the given studies and their series."""
    for uid in study_uids:
        conn.execute(
            "UPDATE series SET num_instances=(SELECT COUNT(*) FROM instances i WHERE i.series_uid=series.series_uid)"
            " WHERE study_uid=?",
            (uid,),
        )
        mods = sorted(
            {m for (m,) in conn.execute("SELECT DISTINCT modality FROM series WHERE study_uid=?", (uid,)) if m}
        )
        conn.execute(
            "UPDATE studies SET modalities=?,"
            " num_series=(SELECT COUNT(*) FROM series s WHERE s.study_uid=studies.study_uid),"
            " num_instances=(SELECT COALESCE(SUM(num_instances),0) FROM series s WHERE s.study_uid=studies.study_uid)"
            " WHERE study_uid=?",
            ("\\".join(mods), uid),
        )


def text_pattern(text: str) -> str | None:
    """A LIKE pattern (escape ``\\``) for the browser's matching rules, or None for 'match everything'."""
    text = _casefold(text)
    if not text or text == "*":
        return None
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if "*" in text or "?" in text:
        return escaped.replace("*", "%").replace("?", "_")
    return f"%{escaped}%"


_STUDY_SELECT = (
    "SELECT s.study_uid, p.patient_name, p.patient_id, p.birth_date, p.sex, s.study_date, s.study_time,"
    " s.accession, s.description, s.modalities, s.num_series, s.num_instances"
    " FROM studies s JOIN patients p ON p.patient_key = s.patient_key"
)


def find_studies(conn: sqlite3.Connection, query: StudyQuery, source: str) -> list[StudyRef]:
    """Studies matching ``query``, newest first (undated studies last)."""
    where: list[str] = []
    args: list[object] = []
    for column, text in (
        ("p.patient_name", query.patient_name),
        ("p.patient_id", query.patient_id),
        ("s.accession", query.accession_number),
        ("s.description", query.study_description),
    ):
        pattern = text_pattern(text)
        if pattern is not None:
            where.append(f"casefold({column}) LIKE ? ESCAPE '\\'")
            args.append(pattern)
    if query.modality.strip():
        # modality is matched exactly (case-insensitive) against any series of the study
        where.append("EXISTS (SELECT 1 FROM series x WHERE x.study_uid=s.study_uid AND upper(x.modality)=?)")
        args.append(query.modality.strip().upper())
    if query.date_from is not None:
        where.append("s.study_date != '' AND s.study_date >= ?")
        args.append(query.date_from.strftime("%Y%m%d"))
    if query.date_to is not None:
        where.append("s.study_date != '' AND s.study_date <= ?")
        args.append(query.date_to.strftime("%Y%m%d"))
    sql = _STUDY_SELECT + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY s.study_date = '', s.study_date DESC, s.study_time DESC, p.patient_name LIMIT ? OFFSET ?"
    args.append(max(int(query.limit), 0) or -1)  # limit 0 = no limit
    args.append(max(int(query.offset), 0))
    return [_study_ref(r, source) for r in conn.execute(sql, args)]


def get_study(conn: sqlite3.Connection, study_uid: str, source: str) -> StudyRef | None:
    row = conn.execute(_STUDY_SELECT + " WHERE s.study_uid=?", (study_uid,)).fetchone()
    return None if row is None else _study_ref(row, source)


def _study_ref(r: tuple, source: str) -> StudyRef:
    return StudyRef(
        study_instance_uid=r[0],
        patient_name=r[1],
        patient_id=r[2],
        patient_birth_date=r[3],
        patient_sex=r[4],
        study_date=r[5],
        study_time=r[6],
        accession_number=r[7],
        study_description=r[8],
        modalities=tuple(m for m in r[9].split("\\") if m),
        number_of_series=r[10],
        number_of_instances=r[11],
        source=source,
    )


def find_series(conn: sqlite3.Connection, study_uid: str, source: str) -> list[SeriesRef]:
    rows = conn.execute(
        "SELECT series_uid, study_uid, modality, series_number, description, num_instances, body_part"
        " FROM series WHERE study_uid=? ORDER BY series_number IS NULL, series_number, description, series_uid",
        (study_uid,),
    )
    return [
        SeriesRef(
            series_instance_uid=r[0],
            study_instance_uid=r[1],
            modality=r[2],
            series_number=r[3],
            series_description=r[4],
            number_of_instances=r[5],
            body_part=r[6],
            source=source,
        )
        for r in rows
    ]


def series_paths(conn: sqlite3.Connection, series_uid: str) -> list[str]:
    """Relative paths of a series' instances in instance-number order (None last); [] when unknown."""
    rows = conn.execute(
        "SELECT path FROM instances WHERE series_uid=? ORDER BY instance_number IS NULL, instance_number, sop_uid",
        (series_uid,),
    )
    return [r[0] for r in rows]


def delete_study_rows(conn: sqlite3.Connection, study_uid: str) -> list[str]:
    """Delete a study's rows (and its patient when no other study is left); returns the removed file paths."""
    paths = [
        r[0]
        for r in conn.execute(
            "SELECT i.path FROM instances i JOIN series x ON x.series_uid=i.series_uid WHERE x.study_uid=?",
            (study_uid,),
        )
    ]
    row = conn.execute("SELECT patient_key FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
    conn.execute(
        "DELETE FROM instances WHERE series_uid IN (SELECT series_uid FROM series WHERE study_uid=?)", (study_uid,)
    )
    conn.execute("DELETE FROM series WHERE study_uid=?", (study_uid,))
    conn.execute("DELETE FROM studies WHERE study_uid=?", (study_uid,))
    if row is not None:
        conn.execute(
            "DELETE FROM patients WHERE patient_key=? AND NOT EXISTS"
            " (SELECT 1 FROM studies WHERE patient_key=?)",
            (row[0], row[0]),
        )
    return paths
