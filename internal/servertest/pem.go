package servertest

import (
	"encoding/pem"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver for schema set-up
)

func pemCert(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
