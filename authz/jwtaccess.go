package authz

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	josev4 "github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/authz/authz/storage"
)

// JWT access tokens (RFC 9068). A client registered with
// access_token_strategy "jwt" gets access tokens that a resource server
// can verify itself against the JWKS; everyone else gets opaque ones.
// Either kind is recorded by its signature (for a JWT, its JWS signature
// segment), so introspection and revocation treat them alike: revoked is
// inactive at introspection, but an offline verifier sees a JWT as good
// until its exp.

// accessTokens issues each client's access tokens in its format and
// recognises both formats when they come back. Refresh tokens and codes
// stay opaque whatever the client.
type accessTokens struct {
	oauth2.CoreStrategy // opaque HMAC tokens and codes
	signer              *keySigner
	issuer              string
	now                 func() time.Time
	subjects            *subjects // the sub each client sees (pairwise.go)
}

var _ oauth2.CoreStrategy = (*accessTokens)(nil)

// isJWT tells a JWS compact token (three segments) from an opaque one
// (two: key and HMAC).
func isJWT(token string) bool { return strings.Count(token, ".") == 2 }

// GenerateAccessToken is called by each grant handler once it has put the
// whole grant on r, before r is stored: the moment to narrow it to what
// the token request asked for (storage.Narrowing, resources.go).
func (s *accessTokens) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	if n := storage.NarrowingOf(ctx); n != nil {
		n.Apply(r)
	}
	if c, ok := r.GetClient().(*storage.Client); ok && c.AccessTokenStrategy == "jwt" {
		return s.generateJWT(ctx, r, c)
	}
	return s.CoreStrategy.GenerateAccessToken(ctx, r)
}

func (s *accessTokens) AccessTokenSignature(ctx context.Context, token string) string {
	if isJWT(token) {
		return token[strings.LastIndexByte(token, '.')+1:]
	}
	return s.CoreStrategy.AccessTokenSignature(ctx, token)
}

// ValidateAccessToken checks a token found by its signature: expiry from
// what was stored, as for opaque tokens, and for a JWT its JWS, so that
// a stored signature under a payload of someone else's making is refused.
func (s *accessTokens) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	if !isJWT(token) {
		return s.CoreStrategy.ValidateAccessToken(ctx, r, token)
	}
	if exp := r.GetSession().GetExpiresAt(fosite.AccessToken); !exp.IsZero() && !s.now().Before(exp) {
		return fosite.ErrTokenExpired.WithHintf("Access token expired at '%s'.", exp)
	}
	if err := s.verifyJWS(ctx, token); err != nil {
		return fosite.ErrTokenSignatureMismatch.WithWrap(err).WithDebug(err.Error())
	}
	return nil
}

// forgedJWT reports whether a JWS-shaped token fails to verify against
// our published keys as an access token: it cannot be one of ours,
// lookup or not.
func (s *accessTokens) forgedJWT(ctx context.Context, token string) bool {
	return s.verifyJWS(ctx, token) != nil
}

// jwsAlgs are the algorithms our keys sign with.
var jwsAlgs = []josev4.SignatureAlgorithm{josev4.RS256, josev4.PS256, josev4.ES256, josev4.EdDSA}

// verifyJWS checks that token is an access token (typ at+jwt) signed by
// the published key its kid names, in that key's own algorithm. Its
// claims are not checked: expiry comes from what was stored, and a
// replica whose clock runs a second ahead must not make its tokens look
// forged elsewhere (fosite's parser checks iat without leeway).
func (s *accessTokens) verifyJWS(ctx context.Context, token string) error {
	jws, err := josev4.ParseSigned(token, jwsAlgs)
	if err != nil {
		return err
	}
	if len(jws.Signatures) != 1 {
		return errors.New("the token does not have exactly one signature")
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders[josev4.HeaderType].(string); !strings.EqualFold(typ, "at+jwt") {
		return fmt.Errorf("the token's typ is %q, not at+jwt", typ)
	}
	k, err := s.signer.keys.verificationKey(ctx, h.KeyID)
	if err != nil {
		return err
	}
	if h.Algorithm != k.Algorithm {
		return fmt.Errorf("the token's alg %q is not its key's %q", h.Algorithm, k.Algorithm)
	}
	_, err = jws.Verify(k.Public())
	return err
}

// generateJWT signs an RFC 9068 access token for r with the client's
// algorithm. Its claims say what introspection would: who (sub,
// client_id), for what (aud, scope), until when (exp) and, after a
// sign-in, when and how the person authenticated.
func (s *accessTokens) generateJWT(ctx context.Context, r fosite.Requester, c *storage.Client) (string, string, error) {
	jti := make([]byte, 18)
	if _, err := rand.Read(jti); err != nil {
		return "", "", err
	}
	now := s.now().UTC()
	sess := r.GetSession()
	claims := jwt.MapClaims{
		"iss":       s.issuer,
		"iat":       now.Unix(),
		"aud":       accessTokenAudience(r, s.issuer),
		"client_id": c.GetID(),
		"jti":       base64.RawURLEncoding.EncodeToString(jti),
	}
	exp := sess.GetExpiresAt(fosite.AccessToken)
	if exp.IsZero() {
		return "", "", errors.New("generate JWT access token: the session has no access token expiry")
	}
	claims["exp"] = exp.Unix()
	// RFC 9068 2.2: with no resource owner (client_credentials), sub
	// names the client.
	if sub := sess.GetSubject(); sub != "" {
		claims["sub"] = s.subjects.of(c, sub)
	} else {
		claims["sub"] = c.GetID()
	}
	if scope := strings.Join(r.GetGrantedScopes(), " "); scope != "" {
		claims["scope"] = scope
	}
	if os, ok := sess.(openid.Session); ok {
		if id := os.IDTokenClaims(); id != nil && !id.AuthTime.IsZero() {
			claims["auth_time"] = id.AuthTime.Unix()
			if len(id.AuthenticationMethodsReferences) > 0 {
				claims["amr"] = id.AuthenticationMethodsReferences
			}
		}
	}
	header := &jwt.Headers{Extra: map[string]any{"typ": "at+jwt"}}
	return s.signer.Generate(withSigningAlg(ctx, c.IDTokenSignedResponseAlg), claims, header)
}

// accessTokenAudience is the aud of a JWT access token: the resources
// granted (RFC 8707) or, with none asked for, this server itself (RFC 9068
// 3 wants a default), which no other resource server will take as its
// own.
func accessTokenAudience(r fosite.Requester, issuer string) []string {
	if aud := r.GetGrantedAudience(); len(aud) > 0 {
		return aud
	}
	return []string{issuer}
}
