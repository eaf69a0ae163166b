-- The first schema: accounts, sessions, friends, groups and messages.
-- Times are epoch milliseconds; users.delivered_up_to is the delivery cursor.

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    nickname TEXT NOT NULL,
    password_hash BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    delivered_up_to INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE friend_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    from_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    to_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    answered_at INTEGER
);
CREATE INDEX friend_requests_to ON friend_requests (to_id, status);
CREATE INDEX friend_requests_from ON friend_requests (from_id, status);

CREATE TABLE friendships (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    friend_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);

CREATE TABLE chat_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    owner_id INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL
);

CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at INTEGER NOT NULL,
    joined_after_id INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL,
    sender_id INTEGER NOT NULL REFERENCES users (id),
    to_user_id INTEGER REFERENCES users (id),
    group_id INTEGER REFERENCES chat_groups (id),
    content TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    client_msg_id TEXT
);
CREATE INDEX messages_by_conversation ON messages (conversation, id);
CREATE INDEX messages_to_user ON messages (to_user_id, id);
CREATE INDEX messages_by_group ON messages (group_id, id);
CREATE UNIQUE INDEX messages_client_id ON messages (sender_id, client_msg_id);
