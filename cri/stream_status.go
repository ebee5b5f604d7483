package cri

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// isInvalid reports whether the streaming library refused a request as
// invalid (it returns gRPC status errors).
func isInvalid(err error) bool {
	return status.Code(err) == codes.InvalidArgument
}

// statusMessage is the message of a gRPC status error, or err's text.
func statusMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}
