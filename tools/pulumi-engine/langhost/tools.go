//go:build tools

// Package langhost pins the Python language host built into .pulumi-cli/bin (see ../build.sh).
package langhost

import (
	_ "github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python"
)
