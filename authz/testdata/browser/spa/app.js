// The SPA of authz/browser_test.go: a public client that signs in with
// oidc-client-ts (authorization code + PKCE) against the issuer named in
// /config.json, served by the test. The page sets body[data-state] to
// "ready", "signed-in" or "error" so the driver knows when to look.
"use strict";

(async () => {
  const done = (state) => { document.body.dataset.state = state; };
  const fail = (err) => {
    const el = document.getElementById("error");
    el.textContent = String(err && err.message ? err.message : err);
    el.hidden = false;
    done("error");
    console.error("sign-in failed:", err);
  };
  try {
    const cfg = await (await fetch("/config.json")).json();
    const mgr = new oidc.UserManager({
      authority: cfg.authority,
      client_id: cfg.client_id,
      redirect_uri: location.origin + "/callback",
      response_type: "code",
      scope: "openid profile",
      loadUserInfo: true,            // a CORS preflighted GET with a bearer token
      automaticSilentRenew: false,   // no iframes in this check
    });
    if (location.pathname === "/callback") {
      const user = await mgr.signinRedirectCallback();
      document.getElementById("sub").value = user.profile.sub;
      document.getElementById("username").value = user.profile.preferred_username || "";
      document.getElementById("status").textContent = "Signed in.";
      done("signed-in");
      return;
    }
    const button = document.getElementById("signin");
    button.addEventListener("click", () => { mgr.signinRedirect().catch(fail); });
    button.disabled = false;
    done("ready");
  } catch (err) {
    fail(err);
  }
})();
