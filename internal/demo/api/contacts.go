package api

import (
	"crypto/sha256"
	"fmt"
	"strings"
)

// contact is one made-up address book entry.
type contact struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	Phone string `json:"phone"`
}

var (
	firstNames = []string{
		"Ada", "Alan", "Barbara", "Claude", "Dennis", "Donald", "Edsger", "Frances",
		"Grace", "Hedy", "John", "Joan", "Ken", "Leslie", "Margaret", "Niklaus",
	}
	lastNames = []string{
		"Allen", "Backus", "Cerf", "Dijkstra", "Hamilton", "Hopper", "Kahn", "Knuth",
		"Lamport", "Liskov", "Lovelace", "Perlman", "Ritchie", "Thompson", "Turing", "Wirth",
	}
)

// contactsFor makes up three contacts for a user. The same sub always gets
// the same contacts, and different subs (almost always) different ones.
func contactsFor(sub string) []contact {
	seed := sha256.Sum256([]byte("demo-api contacts\x00" + sub))
	out := make([]contact, 3)
	for i := range out {
		b := seed[4*i : 4*i+4]
		first := firstNames[int(b[0])%len(firstNames)]
		last := lastNames[int(b[1])%len(lastNames)]
		out[i] = contact{
			Name:  first + " " + last,
			Email: strings.ToLower(first+"."+last) + "@example.com",
			// 555-0100 to 555-0199 are reserved for fiction.
			Phone: fmt.Sprintf("+1 555 01%02d", (int(b[2])<<8|int(b[3]))%100),
		}
	}
	return out
}
