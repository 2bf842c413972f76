package authz

import (
	"html/template"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPageMsg: msg escapes its text and string arguments, lets a strong
// argument through as markup, and refuses an unknown key.
func TestPageMsg(t *testing.T) {
	got, err := pageMsg("consent.signed_in_as", pageStrong(`<b>al"ice</b>`))
	if want := template.HTML(`Signed in as <strong>&lt;b&gt;al&#34;ice&lt;/b&gt;</strong>`); err != nil || got != want {
		t.Errorf("msg with strong = %q, %v; want %q", got, err, want)
	}
	got, err = pageMsg("consent.trust", `<script>x</script>`)
	if want := template.HTML(`Only allow this if you trust &lt;script&gt;x&lt;/script&gt;.`); err != nil || got != want {
		t.Errorf("msg with a string = %q, %v; want %q", got, err, want)
	}
	if _, err := pageMsg("no.such.key"); err == nil {
		t.Error("msg of an unknown key: no error")
	}
	if got := pageMessage("scope.unknown", "contacts"); got != `Access "contacts"` {
		t.Errorf("pageMessage = %q", got)
	}
}

// TestPagesRefuseUnknownText: a template naming a text that does not
// exist fails at start-up, naming the file and the key, even in a branch
// the sample data never takes.
func TestPagesRefuseUnknownText(t *testing.T) {
	dir := copyPageTemplates(t)
	login := filepath.Join(dir, "login.html")
	b, err := os.ReadFile(login)
	if err != nil {
		t.Fatal(err)
	}
	typo := strings.Replace(string(b), `{{msg "login.lead.no_client"}}`, `{{msg "login.lead.no_clinet"}}`, 1)
	if typo == string(b) {
		t.Fatal(`login.html has no {{msg "login.lead.no_client"}}`)
	}
	if err := os.WriteFile(login, []byte(typo), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = loadPages(dir, "")
	if err == nil || !strings.Contains(err.Error(), "login.html") || !strings.Contains(err.Error(), `"login.lead.no_clinet"`) {
		t.Fatalf("loadPages with a misspelt text key: %v, want an error naming login.html and the key", err)
	}
}

// TestPagesTextComplete: every key the embedded templates use exists, and
// every key in pageText is used by a template or by Go code, so the table
// a translator works from has no dead entries.
func TestPagesTextComplete(t *testing.T) {
	used := map[string]bool{}
	entries, err := os.ReadDir(filepath.Join("..", "templates"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".html" {
			continue
		}
		b, err := os.ReadFile(filepath.Join("..", "templates", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range strings.Split(string(b), `msg "`)[1:] {
			key, _, _ := strings.Cut(part, `"`)
			used[key] = true
			if _, ok := pageText[key]; !ok {
				t.Errorf("%s uses msg %q, which pageText lacks", e.Name(), key)
			}
		}
	}
	for key := range pageText {
		if used[key] || strings.HasPrefix(key, "scope.") || key == "consent.unnamed_app" {
			continue // the scope texts and the unnamed app come from Go code
		}
		t.Errorf("pageText[%q] is used by no template", key)
	}
}
