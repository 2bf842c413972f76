-- A transaction that issues, spends, rotates or revokes a code or a token
-- commits only before its request's deadline. The server starts each request's transaction with
-- authz.commit_by set (storage.beginQuery); a database that stalls with the
-- COMMIT in its socket buffer and resumes after the request answered 503
-- then fails the commit here instead of spending a code or rotating a
-- refresh token for nobody. Deferred, so it runs at COMMIT itself.
CREATE OR REPLACE FUNCTION authz_check_commit_deadline() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	commit_by text := current_setting('authz.commit_by', true);
BEGIN
	IF commit_by IS NOT NULL AND commit_by <> '' AND clock_timestamp() > commit_by::timestamptz THEN
		RAISE EXCEPTION 'the request gave up before this transaction could commit'
			USING ERRCODE = 'query_canceled';
	END IF;
	RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER commit_deadline AFTER INSERT OR UPDATE ON authorization_codes
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION authz_check_commit_deadline();
CREATE CONSTRAINT TRIGGER commit_deadline AFTER INSERT OR UPDATE OR DELETE ON access_tokens
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION authz_check_commit_deadline();
CREATE CONSTRAINT TRIGGER commit_deadline AFTER INSERT OR UPDATE OR DELETE ON refresh_tokens
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION authz_check_commit_deadline();
