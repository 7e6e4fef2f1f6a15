package policy

// A project file is repository content: whoever wrote the repository wrote
// it. When moat finds one by itself in the working directory (rather than
// the user naming it with --policy), it may describe what the project
// needs but may not point moat, which runs outside the sandbox with the
// user's authority, at the user's secrets or files:
//
//   - credentials: a hostile file could send the user's API key, read from
//     moat's environment, to a host of its choosing;
//   - audit.file and tls.ca: moat writes there, so a hostile file could make
//     it append to ~/.bashrc or create keys where the file's author reads;
//   - filesystem.write: a hostile file could make the user's home writable
//     to the agent;
//   - network.endpoints: an endpoint decides which server answers the
//     agent's model requests (a hostile one steers the agent), and may
//     redefine one the user's profile declares;
//   - filesystem.volumes: a host directory made writable to the agent;
//   - filesystem.workspace: it would replace the user's choice (an
//     overlay kept for review, a sanitised copy) with a weaker one;
//   - filesystem.scan: off would silence the user's scan.
//
// The user moves such entries to their own policy file, or names the
// project file on the command line, which vouches for it.

// checkFoundProject returns an error for each entry a found project file
// may not set.
func checkFoundProject(p *Policy) Errors {
	var errs Errors
	refuse := func(o Origin, key, what string) {
		errs = append(errs, errAt(o, key, "a project file moat found in the working directory may not set "+what+
			" (it is repository content); move it to your user policy, or name the file with --policy to vouch for it"))
	}
	for _, c := range p.Credentials {
		refuse(c.Origin, c.Origin.Key, "credentials")
	}
	if p.Audit.File.Value != "" {
		refuse(p.Audit.File.Origin, "audit.file", "audit.file")
	}
	if p.TLS.CA.Value != "" {
		refuse(p.TLS.CA.Origin, "tls.ca", "tls.ca")
	}
	for _, w := range p.Filesystem.Write {
		refuse(w.Origin, w.Origin.Key, "filesystem.write")
	}
	for _, e := range p.Network.Endpoints {
		refuse(e.Origin, e.Origin.Key, "network.endpoints")
	}
	for _, v := range p.Filesystem.Volumes {
		refuse(v.Origin, v.Origin.Key, "filesystem.volumes")
	}
	if p.Filesystem.Workspace.Value != "" {
		refuse(p.Filesystem.Workspace.Origin, "filesystem.workspace", "filesystem.workspace")
	}
	if p.Filesystem.Scan.Value == "off" {
		refuse(p.Filesystem.Scan.Origin, "filesystem.scan", "filesystem.scan: off")
	}
	return errs
}
