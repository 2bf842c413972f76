package demotest

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// Browser keeps cookies and stops at every redirect, so that a test sees
// every hop.
type Browser struct {
	t      testing.TB
	Client *http.Client
}

func NewBrowser(t testing.TB) *Browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Browser{t: t, Client: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Page is a response, read whole.
type Page struct {
	Status int
	Header http.Header
	Body   string
	URL    *url.URL // the request's
}

// Get fetches rawURL.
func (b *Browser) Get(rawURL string) *Page {
	b.t.Helper()
	resp, err := b.Client.Get(rawURL)
	if err != nil {
		b.t.Fatalf("GET %s: %v", rawURL, err)
	}
	return ReadPage(b.t, resp)
}

// ReadPage reads and closes resp.
func ReadPage(t testing.TB, resp *http.Response) *Page {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &Page{Status: resp.StatusCode, Header: resp.Header, Body: string(body), URL: resp.Request.URL}
}

// IsRedirect reports whether the page sends the browser elsewhere.
func (p *Page) IsRedirect() bool {
	switch p.Status {
	case http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect:
		return p.Header.Get("Location") != ""
	}
	return false
}

// IsLogin reports whether the page is the provider's login page.
func (p *Page) IsLogin() bool {
	return p.Status == http.StatusOK && strings.Contains(p.Body, `name="password"`)
}

// IsConsent reports whether the page is the provider's consent page.
func (p *Page) IsConsent() bool {
	return p.Status == http.StatusOK && strings.Contains(p.Body, `value="allow"`)
}

// Location is where a redirect points; the test fails for any other page.
func (p *Page) Location(t testing.TB) *url.URL {
	t.Helper()
	if !p.IsRedirect() {
		t.Fatalf("want a redirect, got %d at %s:\n%s", p.Status, p.URL, p.Body)
	}
	loc, err := p.URL.Parse(p.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// Cookies are the cookies the response sets, by name.
func (p *Page) Cookies() map[string]*http.Cookie {
	out := map[string]*http.Cookie{}
	for _, c := range (&http.Response{Header: p.Header}).Cookies() {
		out[c.Name] = c
	}
	return out
}

// Form is a <form> of a page: its method, action, named inputs and the ids
// of its elements.
type Form struct {
	Method, Action string
	Values         url.Values
	IDs            []string
}

// Forms are the page's forms, in order.
func (p *Page) Forms(t testing.TB) []*Form {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(p.Body))
	if err != nil {
		t.Fatal(err)
	}
	var out []*Form
	var walk func(n *html.Node, f *Form)
	walk = func(n *html.Node, f *Form) {
		if n.Type == html.ElementNode {
			if n.Data == "form" { // HTML forms do not nest
				f = &Form{Method: strings.ToUpper(attr(n, "method")), Action: attr(n, "action"), Values: url.Values{}}
				out = append(out, f)
			}
			if f != nil {
				if id := attr(n, "id"); id != "" {
					f.IDs = append(f.IDs, id)
				}
				if name := attr(n, "name"); n.Data == "input" && name != "" {
					f.Values.Add(name, attr(n, "value"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, f)
		}
	}
	walk(doc, nil)
	return out
}

// Form returns the page's form holding the element with the given id or,
// with id "", its only form.
func (p *Page) Form(t testing.TB, id string) Form {
	t.Helper()
	forms := p.Forms(t)
	for _, f := range forms {
		if id == "" && len(forms) == 1 || id != "" && slices.Contains(f.IDs, id) {
			return *f
		}
	}
	t.Fatalf("no form with #%s on the page (%d at %s):\n%s", id, p.Status, p.URL, p.Body)
	return Form{}
}

// Text returns the text of the element with the given id, spaces
// collapsed, and whether the page has one.
func (p *Page) Text(t testing.TB, id string) (string, bool) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(p.Body))
	if err != nil {
		t.Fatal(err)
	}
	var found *html.Node
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if found != nil {
			return
		}
		if n.Type == html.ElementNode && attr(n, "id") == id {
			found = n
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if found == nil {
		return "", false
	}
	var sb strings.Builder
	var collect func(n *html.Node)
	collect = func(n *html.Node) {
		if n.Type == html.TextNode {
			sb.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			collect(c)
		}
	}
	collect(found)
	return strings.Join(strings.Fields(sb.String()), " "), true
}

// Submit sends the page's form that holds #id (or, with id "", its only
// form) with its inputs and the given fields set.
func (b *Browser) Submit(p *Page, id string, set map[string]string) *Page {
	b.t.Helper()
	f := p.Form(b.t, id)
	for k, v := range set {
		f.Values.Set(k, v)
	}
	target, err := p.URL.Parse(f.Action)
	if err != nil {
		b.t.Fatal(err)
	}
	if f.Method == http.MethodGet {
		target.RawQuery = f.Values.Encode()
		return b.Get(target.String())
	}
	resp, err := b.Client.PostForm(target.String(), f.Values)
	if err != nil {
		b.t.Fatalf("POST %s: %v", target, err)
	}
	return ReadPage(b.t, resp)
}

// Follow follows redirects from p until a page that is not one.
func (b *Browser) Follow(p *Page) *Page {
	b.t.Helper()
	for range 20 {
		if !p.IsRedirect() {
			return p
		}
		p = b.Get(p.Location(b.t).String())
	}
	b.t.Fatalf("too many redirects, at %s", p.URL)
	return nil
}

// Through goes on from p across servers as a person would: it follows
// redirects, signs in on the provider's login page with username and
// password, and answers its consent page with decision ("allow" or
// "deny"), until a page that is none of these. It returns that page and
// every page on the way.
func (b *Browser) Through(p *Page, username, password, decision string) (*Page, []*Page) {
	b.t.Helper()
	var trail []*Page
	for range 20 {
		trail = append(trail, p)
		switch {
		case p.IsRedirect():
			p = b.Get(p.Location(b.t).String())
		case p.IsLogin():
			p = b.Submit(p, "", map[string]string{"username": username, "password": password, "action": "login"})
		case p.IsConsent():
			p = b.Submit(p, "", map[string]string{"action": decision})
		default:
			return p, trail
		}
	}
	b.t.Fatalf("no end in sight at %s", p.URL)
	return nil, nil
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}
