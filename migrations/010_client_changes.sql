-- Each server keeps the clients it has used in memory (storage's client
-- cache). A change committed on any replica, by any tool, is announced on
-- the channel authz_clients with the client's id, so every replica drops
-- its copy; '*' asks them to drop everything. Notifications are sent at
-- commit and only then.
CREATE FUNCTION authz_announce_client_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		PERFORM pg_notify('authz_clients', '*');
		RETURN NULL;
	END IF;
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		-- A payload is limited to 8000 bytes: an id too long for one
		-- drops every cached client instead.
		PERFORM pg_notify('authz_clients', CASE WHEN octet_length(OLD.id) > 4000 THEN '*' ELSE OLD.id END);
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		PERFORM pg_notify('authz_clients', CASE WHEN octet_length(NEW.id) > 4000 THEN '*' ELSE NEW.id END);
	END IF;
	RETURN NULL;
END
$$;

CREATE TRIGGER clients_announce_change
	AFTER INSERT OR UPDATE OR DELETE ON clients
	FOR EACH ROW EXECUTE FUNCTION authz_announce_client_change();

CREATE TRIGGER clients_announce_truncate
	AFTER TRUNCATE ON clients
	FOR EACH STATEMENT EXECUTE FUNCTION authz_announce_client_change();
