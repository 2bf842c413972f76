package authz_test

import (
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := func() authz.Config {
		c, err := authz.ConfigFromEnv(func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		c.Secrets = [][]byte{[]byte("0123456789abcdef0123456789abcdef-one")}
		return c
	}
	if c := good(); c.Validate() != nil {
		t.Fatalf("defaults with a secret: %v", c.Validate())
	}
	cases := []struct {
		name   string
		change func(*authz.Config)
		want   string
	}{
		{"no secret", func(c *authz.Config) { c.Secrets = nil }, "AUTHZ_SECRETS is not set"},
		{"short secret", func(c *authz.Config) { c.Secrets = [][]byte{[]byte("short")} }, "at least 32"},
		{"secrets alike in the signing part", func(c *authz.Config) {
			c.Secrets = [][]byte{[]byte("0123456789abcdef0123456789abcdef-one"), []byte("0123456789abcdef0123456789abcdef-two")}
		}, "share their first 32 bytes"},
		{"code lifespan over 10 minutes", func(c *authz.Config) { c.AuthorizeCodeLifespan = 11 * time.Minute }, "at most 10m"},
		{"zero access lifespan", func(c *authz.Config) { c.AccessTokenLifespan = 0 }, "AUTHZ_ACCESS_TOKEN_LIFESPAN"},
		{"issuer with a trailing slash", func(c *authz.Config) { c.Issuer = "https://login.example.com/" }, "must not end with a slash"},
		{"issuer not http", func(c *authz.Config) { c.Issuer = "ftp://login.example.com" }, "absolute http(s) URL"},
		{"issuer with a query", func(c *authz.Config) { c.Issuer = "https://login.example.com?x=1" }, "without query"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"AUTHZ_CODE_LIFESPAN": "5m", "AUTHZ_ALLOW_PLAIN_PKCE": "true", "AUTHZ_ISSUER": "https://login.example.com"}
	c, err := authz.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil || c.AuthorizeCodeLifespan != 5*time.Minute || !c.AllowPlainPKCE || c.Issuer != "https://login.example.com" {
		t.Fatalf("ConfigFromEnv = %+v, %v", c, err)
	}
	for k, v := range map[string]string{"AUTHZ_CODE_LIFESPAN": "ten minutes", "AUTHZ_DEBUG": "maybe", "AUTHZ_SECRETS": "short"} {
		if _, err := authz.ConfigFromEnv(func(key string) string {
			if key == k {
				return v
			}
			return ""
		}); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: err = %v, want one naming %s", k, v, err, k)
		}
	}
}
