module cgpu.test/differential/skiprange

go 1.22

require github.com/blang/semver/v4 v4.0.0
