package pcatest

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
)

// Fixed CA keys, so that New costs milliseconds instead of two RSA key
// generations (seconds under -race). They protect nothing: every
// certificate made with them is a test artefact, and each server's CA
// subjects carry its own id. "TESTING KEY" keeps secret scanners quiet, as
// net/http/httptest does with its own key.
var fixedKeys = map[string]string{
	RoleRoot: `-----BEGIN TESTING KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCmlZ+n+GLH5PaJ
Jm91pADMNYeYZyNBwrXwMC/T/jpJ5pCYlgyFyuVeZV4PZjmKf36EoHkTokbUcEKk
HkiBSVxAZlR/f1+PYbFzOTBqUdCEEQRCdv4tCBqoW6McsG95o1DxrzKNWGoS2M6D
6Th/TqJB3XShgm534oMddel5FSDG9l4/pKUd5+vQ5zJPSmN0Makq5GvY07Rot752
RQ0j4+Y6bF/Emm66fkxnZ+0p/5uY/UNvl96B0caPuqn1xnIfO5AuDKeZh2ccQujH
/HhShQeaS+ZrGwC8jKCgJVXRdPrMxE0tV2mO8x0Ag4K2hQF9kccl+Z57zvQluOtd
WBA56VNzAgMBAAECggEADOF56GeM388E/yLhMHP/ecrT0sV61O1k2w8my5oXULqK
yLmlezzukmd9J+ysG1jzY/bylcGQ/4E0rfMHgTO2deZTt04WigQwT+wGodn0qRmV
vjvsOHgtc4IucRv1aq7lpeJ5orNI9G8ePNXuP+3JHxWsHIb02sFBiSgiZvHqyGeJ
YaIWSuoN5KuWsuyG+oBo/71Y3Jfu2qVfb5hzCdNrdKgu4gW2v5NyHphzzb1GGC5F
WcShx98tjALaHXyxKB0/F2Z6kzRDqPu35ipjSPIsWImHAfvWqFsqSHeU/e09/GgI
jLdaINoVyf6HI1TOBKg+6hcEN60b3T/+o+UY8m10jQKBgQDg7J2n4apLW75OWisU
4AuF7spsXexPLcTUeA2+Q0qQN3jn0lCBiF4jSMv8fRkpSCJuTqYZ++Xslcx1dSxE
We0srwEu9B9qv82cKjZbBe4mI4Br52jMR4bj8HfnlQ8S7FAUEI0xwqghvTxEwTH5
Et2uvfcXU+5ffx0b0LwsnqF23wKBgQC9mZPJYOY3ENT2HjuGs+e4/OLTwn+O7cvi
fiIo2UAux8mWTCFSV+21YXdR1ku34aVu9DyiBOaAK8WIHicEBwKADomkKHu4TQf1
gP1IWVJweEqhT8vvyxa6tZhKd/9bzt9srcGczGiNe7DeVbcxQzXY42Da1EDkJeVY
YgKgHP2Z7QKBgE8reiLJj8OOu2Gg42Epq2StNJsIRFFqbsnKqCu8S9aPcANJSAUQ
FvKcgRCSh/S760KgdF7ZB4lLAPinEbnNXWpI/0WjsBtG//xj71YCtFzASkew4HZn
BtfcoJfnI7MpctZdLRXCyqN1lG0vA4QEW/tR6lNPu6vpdjmAM3wRKgxJAoGAQWt9
X83MgZGQOb/iwC7RNLYlOfXxd4q7f9IPzVJw3/NVrkNkd/oY7i3MMvOjOrZkE624
Qhs4wV7ZEId+5NfaV/8sJPVHAyepKF+yhUU0udP3xEM5VesYU6IXAxL2jGIMG360
wHqTVMYqF/0xcZEEQmrqX3c/ULl2shFXYJHAO10CgYAQq2AflYiJ6Yytlx79jV68
QQ671t1/vHq1+WODu8yZtMZ8eIf1vhnM3DPQm1xZbpo96zcvpOsacGTmep/2SGhw
SeTHqqMN3joNvytwGfwxrxL1y4RP+D6KGhwMqjwle68LX8FYxbajTFbYZm1pDVFZ
AMQwLUbefZEvuZPDGNV3KQ==
-----END TESTING KEY-----`,
	RoleClientCA: `-----BEGIN TESTING KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgD+CQfqC/NEDGlBUw
kea1Ec43utqt6MflFl5xOYrrjj6hRANCAASf+HyOahrl5EtrZo8ko3k0EGRB3WiF
GyF7nDWELp9BzhpY6pCwPShHVuEnkRRHA/eEix7r+yMb+/CCKc7GrygF
-----END TESTING KEY-----`,
	RoleServerCA: `-----BEGIN TESTING KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCU2XIh1O03ti7M
eT+qbV1TMlT1zvSuml2K1m+g5ZrbIA4RaVvbxhZ20RFmrWlOzjyswb8x64yKv+2M
JmetmzR7m5E874iHsBuYl78By6u0khYO+09JM07E9e24XMH9kexT2hkwYcDEu2me
uVnU7bRE7mjj1GKIjfVCW6ZcDS+2XwFcnWEO70J2wSzEM0XIL2AIXu+0xtAmhmTY
jO9a7LEmKvtly+nm1xR4uW0e/ISVO2sHc3WbFCOSr73UxiiywSp2aeCFFR8oVxVS
mdT2DgaUc5BZRsoCYJPl3hRdTbr5nw0+XOh8DJXSiZ7dRQbTrzpX5WzGvJA71tyf
gjUkruqdAgMBAAECggEALLYciHkTQJbi+9y3+ROc4u7NgoDGEuSfkKLVKTmPCJ9a
WnSReTTJbqtiVLtmVJuyshoIupAMyWjZjC3FGuryGuch+3HgSxHlWDLM11c8nqL7
KUjoCg71bEiLPcPvKaH5oT50LopOg0ngciMvDrzQV5xduYIEjwxFTceF80SqvlbZ
0XXwHXM/V8O9wgJntAPWZseavik2ZEkiAcjymtT4Tv3J0qQqx/fKaA8bXZaEWI9y
9Yr6jBMUw6/LyKcRWw9U55J151COvFa6ZV0O80E3b8GriyqppO7Z9xGNit8itpGQ
7On4gEdUT1CAVKewqGcRqKzRTzUTCas6UbNI7G3CqQKBgQDSZNvAaUORpH5BhslI
fKzr22He5c4iqMXbIQ6FjzV2cXOpbJZ3jWGYlzCIss1GGqBO64Rfj4JeYxS5l/ie
M2iTt8oEpiN+935PmTmFUj+zY6e8YhFCt/mO3yiGZWqIdEcEXIt4zndncC3xw4PJ
/Yu9IYRJxzjggjxU9DlosTUuewKBgQC1HV4ZYsJwDCRQNR2Arv9XJHUtp58SYlHK
ad9eBFC93c7Y34M+v0Yrfb9B1eJJSM132oYW3R+VMMtsyQCzBEqsww3a3AZhNoYH
whHxpEWdvmxVod+CJXApsvFQUrMjrIjpMp1FaUl9QlTQiPCvjtp0+Jp8O3wQE4LP
ffT93uGLxwKBgQCCZkaZQ+TAIQ6ruEmK5tMaP9eyGgagDrDKtvtUJkWBiqGgMZA0
uujxdUt8fi2iNKCFKY3a2Ix5ybkvqpRKIRzA6VmJdhtr9yNPXG19R1P58Fsm9DU0
f+hp98AbREI6Hq9hcaZ0EquI7ctcG8zT5ZS1fU+LlrGW3MFd+hyW2bZXfwKBgFfV
eTgofBFo4gd/6uHofG6fgLB2dR+uTOo0NB5dS2b49gKZSwYYLwiSgDmGZ6qQwwyY
DqVx8Yoh0tXcGRm4QBrOsZ5tTC7DCXcjuB4PQ6+/lLxmt4VfcKjYXk1M/hGT8AXg
BQOPjxNPIuDLOKZ7ShimJA2Rr5YAUFUeSb0A5TMrAoGAPUQhMDtY5EbRYWnTlBwk
SraGLDNUguZUjKilTIH3hyWnQdpr2KK+6t/s8pgU583lPTUSeQZ7ua8XOiTD0F2+
5n05nhaHXkk41tjkvDiex/4ayIWmH1NSvTbwD5GxiD6NkeMPLpriwQajy7o8zo72
sF2nYv0HZBlTYISLqUPAse0=
-----END TESTING KEY-----`,
	RoleIstioCA: `-----BEGIN TESTING KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDDjbqgicMV0899gNrss
sxP+vJkrkuXJS0j46ilpGryMKNoR4t4HCB7dz7dLmNMIwE6hZANiAAQtkmuJ2EU2
cyOQD4+Zf3dVN2Kf5TD6jsZS40tZEMXHd8NjbVwO62fEQVCRh92nvkz0pR3WEQs9
wJbLwr09+TPid/MNhzUGfXNusADpjCzDRjIu/j9QTJSAP+C7RZynZ1s=
-----END TESTING KEY-----`,
}

func fixedKey(role string) (crypto.Signer, error) {
	block, _ := pem.Decode([]byte(strings.ReplaceAll(fixedKeys[role], "TESTING KEY", "PRIVATE KEY")))
	if block == nil {
		return nil, fmt.Errorf("pcatest: no fixed key for %s", role)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pcatest: fixed key for %s is not a signer", role)
	}
	return s, nil
}
