package e2e

import (
	"os"
	"testing"

	"github.com/authz/authz/storage/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
