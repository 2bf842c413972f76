package authz

import (
	"fmt"
	"html/template"
	"text/template/parse"
)

// pageText holds the English text of the pages, by key, in one place so
// that a translation is one more table with the same keys. Templates call
// {{msg "key" args...}}, Go code pageMessage. Each value is a fmt format;
// %[1]s and the like let a translation put the arguments in its own
// order. (Error pages' titles and messages still come from the handlers
// that show them.)
var pageText = map[string]string{
	// layout.html
	"footer.support": "Help and support",

	// login.html
	"login.title":          "Sign in",
	"login.heading":        "Sign in",
	"login.lead.client":    "to continue to %s",
	"login.lead.no_client": "to continue to your account",
	"login.username":       "Username",
	"login.password":       "Password",
	"login.submit":         "Sign in",

	// consent.html
	"consent.title":        "Allow %s?",
	"consent.heading":      "%s wants to access your account",
	"consent.signed_in_as": "Signed in as %s",
	"consent.scopes_intro": "This will allow %s to:",
	"consent.redirect":     "You will be sent back to %s.",
	"consent.trust":        "Only allow this if you trust %s.",
	"consent.learn_more":   "Learn more about %s",
	"consent.tos":          "Terms of service",
	"consent.policy":       "Privacy policy",
	"consent.deny":         "Deny",
	"consent.allow":        "Allow",
	"consent.unnamed_app":  "An application",
	// A client identified by a URL (authz/cimd.go): the URL, the brand.
	"consent.metadata_document": "This app is identified by %[1]s; it was not registered with %[2]s.",

	// device.html, device_done.html (the device flow, authz/device.go)
	"device.title":           "Connect a device",
	"device.heading":         "Connect a device",
	"device.lead":            "Enter the code shown on your device.",
	"device.code_label":      "Code",
	"device.continue":        "Continue",
	"device.confirm_heading": "%s on your device wants to access your account",
	"device.compare":         "Make sure this code matches the one shown on your device: %s",
	"device.compare_warning": "If it does not, or you did not start this, deny: someone may be trying to get into your account.",
	"device.confirm":         "Confirm",
	"device.cancel":          "Cancel",
	"device.done_approved":   "The device is connected. You can return to your device now.",
	"device.done_denied":     "The request was denied, and the device was not connected. You can return to your device.",
	"device.done_heading":    "Return to your device",

	// What the consent page says a scope allows, unless the scope
	// catalogue describes it (authz/scopes.go).
	"scope.openid":         "Confirm your identity",
	"scope.profile":        "See your name and username",
	"scope.email":          "See your email address",
	"scope.address":        "See your postal address",
	"scope.phone":          "See your phone number",
	"scope.offline_access": "Stay connected when you're not using the app",
	"scope.unknown":        `Access "%s"`,
}

// pageMessage is the text of key with args, for Go code. An unknown key
// is a programming error; it shows as the key rather than as nothing.
func pageMessage(key string, args ...any) string {
	f, ok := pageText[key]
	if !ok {
		return key
	}
	if len(args) == 0 {
		return f
	}
	return fmt.Sprintf(f, args...)
}

// pageMsg is the templates' msg function: the text of key with args, as
// HTML. The text and string arguments are escaped; an argument that is
// already template.HTML (from the strong function) goes in as it is, so
// "Signed in as <strong>alice</strong>" stays one sentence a translator
// can reorder.
func pageMsg(key string, args ...any) (template.HTML, error) {
	f, ok := pageText[key]
	if !ok {
		return "", fmt.Errorf("no page text %q", key)
	}
	esc := make([]any, len(args))
	for i, a := range args {
		switch a := a.(type) {
		case template.HTML:
			esc[i] = string(a)
		case string:
			esc[i] = template.HTMLEscapeString(a)
		default:
			esc[i] = template.HTMLEscapeString(fmt.Sprint(a))
		}
	}
	f = template.HTMLEscapeString(f)
	if len(esc) == 0 {
		return template.HTML(f), nil
	}
	return template.HTML(fmt.Sprintf(f, esc...)), nil
}

// pageStrong is the templates' strong function: s escaped, in <strong>,
// to pass to msg.
func pageStrong(s string) template.HTML {
	return template.HTML("<strong>" + template.HTMLEscapeString(s) + "</strong>")
}

// checkPageText reports a msg call in t whose key is not in pageText, so
// that a typo fails at start-up even in a branch the sample data does not
// take.
func checkPageText(t *template.Template) error {
	for _, tt := range t.Templates() {
		if tt.Tree == nil {
			continue
		}
		if err := (textChecker{tt.Tree}).node(tt.Tree.Root); err != nil {
			return err
		}
	}
	return nil
}

// textChecker walks one template's parse tree for msg calls.
type textChecker struct{ tree *parse.Tree }

func (c textChecker) node(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			return c.nodes(n.Nodes...)
		}
	case *parse.PipeNode:
		if n != nil {
			for _, cmd := range n.Cmds {
				if err := c.node(cmd); err != nil {
					return err
				}
			}
		}
	case *parse.ActionNode:
		return c.node(n.Pipe)
	case *parse.TemplateNode:
		return c.node(n.Pipe)
	case *parse.IfNode:
		return c.nodes(n.Pipe, n.List, n.ElseList)
	case *parse.RangeNode:
		return c.nodes(n.Pipe, n.List, n.ElseList)
	case *parse.WithNode:
		return c.nodes(n.Pipe, n.List, n.ElseList)
	case *parse.ChainNode:
		return c.node(n.Node)
	case *parse.CommandNode:
		if err := c.msgCall(n); err != nil {
			return err
		}
		return c.nodes(n.Args...)
	}
	return nil
}

func (c textChecker) nodes(ns ...parse.Node) error {
	for _, n := range ns {
		if err := c.node(n); err != nil {
			return err
		}
	}
	return nil
}

// msgCall checks a command that calls msg with a literal key.
func (c textChecker) msgCall(n *parse.CommandNode) error {
	if len(n.Args) == 0 {
		return nil
	}
	if id, ok := n.Args[0].(*parse.IdentifierNode); !ok || id.Ident != "msg" {
		return nil
	}
	if len(n.Args) < 2 {
		loc, _ := c.tree.ErrorContext(n)
		return fmt.Errorf("%s: msg needs a key", loc)
	}
	if key, ok := n.Args[1].(*parse.StringNode); ok {
		if _, known := pageText[key.Text]; !known {
			loc, _ := c.tree.ErrorContext(n)
			return fmt.Errorf("%s: msg %q: there is no such text (the keys are in authz/strings.go)", loc, key.Text)
		}
	}
	return nil
}
