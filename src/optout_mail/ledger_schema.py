"""The ledger's schema as numbered migrations, tracked in `PRAGMA user_version`: the tables
of requests, events, folder cursors and popups, and how each version grew from the last.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    -- AUTOINCREMENT: an id is never given twice, even after `requests forget`, so evidence
    -- and the popups already shown (keyed by id) cannot be confused with newer ones.
    CREATE TABLE requests (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        platform    TEXT NOT NULL,
        account     TEXT NOT NULL,          -- the user's address the request is about
        kind        TEXT NOT NULL,
        state       TEXT NOT NULL,
        filed_at    TEXT NOT NULL,
        due_at      TEXT NOT NULL,
        extended    INTEGER NOT NULL DEFAULT 0,
        created_by  TEXT NOT NULL,          -- 'user' (requests add) or 'mail'
        updated_at  TEXT NOT NULL
    );
    CREATE INDEX requests_key ON requests (platform, account, kind);

    CREATE TABLE events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id    INTEGER REFERENCES requests (id) ON DELETE CASCADE,
        message_id    TEXT NOT NULL,
        -- A mail is recorded once. A forged mail must not take the place of the real one with
        -- the same Message-ID, so mails that failed authentication get a key of their own.
        dedupe_key    TEXT NOT NULL UNIQUE,
        outcome       TEXT NOT NULL,
        authentic     INTEGER,              -- 1, 0 or NULL (no verdict to read)
        rule          TEXT NOT NULL,
        language      TEXT,
        code          TEXT,
        reference     TEXT,
        sender        TEXT NOT NULL,
        subject       TEXT NOT NULL,
        received_at   TEXT,
        recorded_at   TEXT NOT NULL,
        source        TEXT NOT NULL,        -- account name, or the local path scanned
        folder        TEXT,
        uid           INTEGER,
        uidvalidity   INTEGER,
        state_before  TEXT,
        state_after   TEXT
    );
    CREATE INDEX events_request ON events (request_id);

    CREATE TABLE cursors (
        source       TEXT NOT NULL,
        folder       TEXT NOT NULL,
        uidvalidity  INTEGER NOT NULL,
        last_uid     INTEGER NOT NULL,
        uidnext      INTEGER,
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (source, folder)
    );

    CREATE TABLE popups (
        key      TEXT PRIMARY KEY,          -- 'event:<id>' or 'overdue:<request id>'
        shown_at TEXT NOT NULL,
        delivered INTEGER NOT NULL
    );
    """,
    # 2: Meta's reference number keeps requests apart; the mail time of the current state, so
    # that an older mail cannot undo a newer answer; why an event moved nothing.
    """
    ALTER TABLE requests ADD COLUMN reference TEXT;
    ALTER TABLE requests ADD COLUMN state_at TEXT;
    ALTER TABLE events ADD COLUMN note TEXT;
    -- What an unverified mail would be about, so that the user can accept it later.
    ALTER TABLE events ADD COLUMN platform TEXT;
    ALTER TABLE events ADD COLUMN kind TEXT;
    ALTER TABLE events ADD COLUMN account TEXT;
    ALTER TABLE events ADD COLUMN extends_deadline INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN confirmed_at TEXT;  -- the user accepted it (requests confirm)
    UPDATE requests SET state_at = (
        SELECT max(received_at) FROM events
        WHERE events.request_id = requests.id AND events.state_before IS NOT events.state_after
    );
    UPDATE requests SET reference = (
        SELECT reference FROM events
        WHERE events.request_id = requests.id AND events.reference IS NOT NULL
        ORDER BY received_at LIMIT 1
    );
    """,
    # 3: the original bytes of each recorded mail, kept as evidence in DATA_DIR/mails/
    """
    ALTER TABLE events ADD COLUMN raw_sha256 TEXT;
    """,
    # 4: the user's own events: notes, and states set by hand (requests note|set-state)
    """
    CREATE TABLE user_events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id    INTEGER NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
        action        TEXT NOT NULL,        -- 'note' or 'set-state'
        text          TEXT NOT NULL,
        recorded_at   TEXT NOT NULL,
        state_before  TEXT,
        state_after   TEXT
    );
    CREATE INDEX user_events_request ON user_events (request_id);
    """,
)
