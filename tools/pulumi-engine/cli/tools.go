//go:build tools

// Package cli pins the Pulumi CLI built into .pulumi-cli/bin (see ../build.sh).
package cli

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
