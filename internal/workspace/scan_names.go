package workspace

import (
	"path"
	"strings"
)

// CredentialFile reports whether a slash-separated relative path names a
// credential file by its name alone (.env, id_rsa, *.pem, .npmrc, …) and which
// rule. Only the path's last components decide, so prefixing a directory
// never changes the answer. Example files (.env.example, .env.sample, …) are
// not credential files; their content is still scanned.
func CredentialFile(rel string) (rule string, ok bool) {
	rel = strings.TrimSuffix(rel, "/")
	if rel == "" {
		return "", false
	}
	// Names compare without case: a .PEM or .Env holds the same secrets.
	lower := strings.ToLower(rel)
	base := path.Base(lower)
	if base == "." || base == ".." || base == "/" {
		return "", false
	}
	dir := path.Dir(lower)
	dirs := "/" + dir + "/"
	if dir == "." {
		dirs = "/"
	}
	if r, ok := byBase[base]; ok {
		return r, true
	}
	if r, ok := byParentBase[path.Base(dir)+"/"+base]; ok && dir != "." {
		return r, true
	}
	if r, ok := byDirTail(dirs, base); ok {
		return r, true
	}
	if strings.Contains(dirs, "/.azure/") {
		return "azure-credentials", true // the Azure CLI's and azd's token caches and .env files
	}
	if r, ok := dotenv(base); ok {
		return r, true
	}
	if ext := path.Ext(base); ext != "" {
		if r, ok := byExt[ext]; ok {
			return r, true
		}
	}
	if strings.HasSuffix(base, ".json") &&
		(strings.Contains(base, "service-account") || strings.Contains(base, "service_account")) {
		return "service-account-key", true
	}
	if strings.HasPrefix(base, "client_secret") && strings.HasSuffix(base, ".json") {
		return "oauth-client-secret", true
	}
	if strings.HasSuffix(base, ".kubeconfig") {
		return "kubeconfig", true
	}
	return "", false
}

// byBase holds names that are credential files wherever they are.
var byBase = map[string]string{
	".git-credentials":                     "git-credentials",
	"application_default_credentials.json": "gcloud-credentials",
	".npmrc":                               "npmrc",
	".pypirc":                              "pypirc",
	".netrc":                               "netrc",
	"_netrc":                               "netrc",
	".pgpass":                              "pgpass",
	".vault-token":                         "vault-token",
	"credentials.tfrc.json":                "terraform-credentials",
	"kubeconfig":                           "kubeconfig",
	".s3cfg":                               "s3cmd-config",
	"id_rsa":                               "ssh-private-key",
	"id_dsa":                               "ssh-private-key",
	"id_ecdsa":                             "ssh-private-key",
	"id_ecdsa_sk":                          "ssh-private-key",
	"id_ed25519":                           "ssh-private-key",
	"id_ed25519_sk":                        "ssh-private-key",
	"id_xmss":                              "ssh-private-key",
	"secring.gpg":                          "gnupg-private-key",
}

// byParentBase holds names that are credential files in a directory of a
// given name ("parent/base").
var byParentBase = map[string]string{
	".aws/credentials":          "aws-credentials",
	".docker/config.json":       "docker-config",
	".kube/config":              "kubeconfig",
	".ssh/identity":             "ssh-private-key",
	"gh/hosts.yml":              "gh-hosts",
	".config/hub":               "hub-config",
	"git/credentials":           "git-credentials",
	".cargo/credentials":        "cargo-credentials",
	".cargo/credentials.toml":   "cargo-credentials",
	".gem/credentials":          "gem-credentials",
	".claude/.credentials.json": "claude-credentials",
	"gcloud/credentials.db":     "gcloud-credentials",
	"gcloud/access_tokens.db":   "gcloud-credentials",
}

// byDirTail matches files anywhere below a credential directory.
func byDirTail(dirs, base string) (string, bool) {
	switch {
	case strings.Contains(dirs, "/gcloud/legacy_credentials/"):
		return "gcloud-credentials", true
	case strings.Contains(dirs, "/.gnupg/private-keys-v1.d/"):
		return "gnupg-private-key", true
	case strings.Contains(dirs, "/.aws/sso/cache/"), strings.Contains(dirs, "/.aws/cli/cache/"):
		if strings.HasSuffix(base, ".json") {
			return "aws-credentials", true
		}
	}
	return "", false
}

// byExt holds extensions of key and keystore files.
var byExt = map[string]string{
	".pem":      "pem-file",
	".key":      "key-file",
	".p12":      "pkcs12-file",
	".pfx":      "pkcs12-file",
	".jks":      "java-keystore",
	".keystore": "java-keystore",
	".ppk":      "putty-private-key",
}

// exampleSuffixes mark env files that document variables rather than hold
// them; committing them is the convention, so they are not flagged by name.
var exampleSuffixes = []string{"example", "sample", "template", "tmpl", "tpl", "dist", "defaults", "schema", "default"}

// dotenv matches .env, .env.*, .envrc and *.env, except examples.
func dotenv(base string) (string, bool) {
	var qual string
	switch {
	case base == ".env" || base == ".envrc":
		return "dotenv-file", true
	case strings.HasPrefix(base, ".env."):
		qual = strings.TrimPrefix(base, ".env.")
	case strings.HasSuffix(base, ".env") && len(base) > len(".env"):
		qual = strings.TrimSuffix(base, ".env")
	default:
		return "", false
	}
	for _, part := range strings.FieldsFunc(qual, func(r rune) bool { return r == '.' || r == '-' || r == '_' }) {
		for _, s := range exampleSuffixes {
			if part == s {
				return "", false
			}
		}
	}
	return "dotenv-file", true
}

// HomeLocations are the places below a home directory where tools keep
// credentials, for moat scan --home: slash-separated, relative to the home
// directory, each a file or a directory that may be absent.
var HomeLocations = []string{
	".ssh", ".aws", ".config/gcloud", ".azure", ".docker/config.json", ".kube",
	".git-credentials", ".config/git/credentials", ".npmrc", ".pypirc", ".netrc",
	".config/gh", ".config/hub", ".cargo/credentials", ".cargo/credentials.toml",
	".gem/credentials", ".gnupg/private-keys-v1.d", ".gnupg/secring.gpg",
	".claude/.credentials.json", ".pgpass", ".vault-token", ".s3cfg",
	".terraform.d/credentials.tfrc.json", ".env",
}
