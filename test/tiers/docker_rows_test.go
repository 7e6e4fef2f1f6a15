package tiers_test

import "testing"

func init() { dockerRows = dockerTiers }

// dockerTiers are the docker rows: docker (the daemon's runc) and docker
// with runsc, on the local test image (docker_test.go builds it).
func dockerTiers(t *testing.T) []tier {
	t.Helper()
	if !dockerAvailable(t) {
		return nil
	}
	img := dockerImage(t)
	return []tier{
		{name: "docker", flags: []string{"--isolation", "docker", "--image", img}, docker: true},
		{name: "docker-runsc", flags: []string{"--isolation", "docker", "--runtime", "runsc", "--image", img}, docker: true, gvisor: true},
	}
}
