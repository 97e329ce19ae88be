package ca

import "go.uber.org/zap"

func zapFields(op, caARN, template, rid, code string, err error) []zap.Field {
	f := []zap.Field{zap.String("operation", op), zap.String("ca_arn", caARN), zap.String("aws_request_id", rid),
		zap.String("aws_error_code", code), zap.Error(err)}
	if template != "" {
		f = append(f, zap.String("template", template))
	}
	return f
}
