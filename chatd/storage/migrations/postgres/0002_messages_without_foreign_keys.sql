-- Messages are written only after the same statement has checked that the
-- sender is a friend of the recipient or a member of the group, which
-- implies both exist; the foreign keys on messages added a trigger call per
-- row and per key (a fifth of the cost of a large batch) and checked
-- nothing new. Accounts and groups are never deleted.

ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_sender_id_fkey;
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_to_user_id_fkey;
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_group_id_fkey;
