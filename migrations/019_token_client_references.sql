-- Issue 11: token rows stop referencing clients by foreign key.
--
-- Each insert into a token table checked its client with SELECT ... FOR
-- KEY SHARE on the client's row. Every grant of a busy client locked the
-- same row, which turned into a MultiXact and an extra WAL record per
-- token: about a quarter of PostgreSQL's work per client_credentials
-- grant. What the keys gave is kept another way (storage/clients.go):
--
--  * Deleting a client deletes its codes and tokens in the same
--    statement, as ON DELETE CASCADE did, and leaves a row here.
--  * A grant that read the client before the delete may still commit a
--    token after it. Such a row names a client that does not exist, and
--    every read of a token joins or looks up its client, so it is as good
--    as absent. It would come back to life only if a client were created
--    again under the same id, so that is refused for a minute after the
--    delete (every transaction that writes tokens commits within its
--    request's deadline, at most 25 s, or not at all: migration 006), and
--    afterwards the creation first removes whatever rows the old client
--    left.
--
-- Consents, pushed requests and device codes keep their keys: none of
-- them is written per token.
DO $$
DECLARE
	fk record;
BEGIN
	FOR fk IN
		SELECT c.conname, c.conrelid::regclass AS tbl
		FROM pg_constraint c
		WHERE c.contype = 'f' AND c.confrelid = 'clients'::regclass
		  AND c.conrelid IN ('authorization_codes'::regclass, 'access_tokens'::regclass,
		                     'refresh_tokens'::regclass, 'pkce_requests'::regclass, 'oidc_sessions'::regclass)
	LOOP
		EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.tbl, fk.conname);
	END LOOP;
END
$$;

CREATE TABLE deleted_clients (
    id         text        PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
