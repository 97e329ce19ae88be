package config

import (
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var errEOF = io.EOF

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "CERTGATE_") {
			m[k] = v
		}
	}
	return m
}

var durationType = reflect.TypeOf(Duration(0))

// applyEnv walks the struct by its yaml tags. Scalars take the value as is;
// lists take comma-separated values; maps and principals take YAML (flow
// syntax works: CERTGATE_AWS_PCA_TEMPLATES='{server: X}').
func applyEnv(v reflect.Value, prefix string, env map[string]string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")
		fv := v.Field(i)
		if len(tag) > 1 && tag[1] == "inline" {
			if err := applyEnv(fv, prefix, env); err != nil {
				return err
			}
			continue
		}
		if tag[0] == "" || tag[0] == "-" {
			continue
		}
		key := prefix + "_" + strings.ToUpper(strings.ReplaceAll(tag[0], "-", "_"))
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			if err := applyEnv(fv, key, env); err != nil {
				return err
			}
			continue
		}
		raw, ok := env[key]
		if !ok {
			continue
		}
		if err := setFromString(fv, raw); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

func setFromString(fv reflect.Value, raw string) error {
	if fv.Type() == durationType {
		d, err := ParseDuration(raw)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int64:
		if fv.Type() == reflect.TypeOf(time.Duration(0)) {
			d, err := ParseDuration(raw)
			if err != nil {
				return err
			}
			fv.SetInt(int64(d))
			return nil
		}
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return err
		}
		fv.SetInt(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return err
		}
		fv.SetFloat(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() == reflect.String {
			var parts []string
			for _, p := range strings.Split(raw, ",") {
				if p = strings.TrimSpace(p); p != "" {
					parts = append(parts, p)
				}
			}
			fv.Set(reflect.ValueOf(parts))
			return nil
		}
		return yaml.Unmarshal([]byte(raw), fv.Addr().Interface())
	case reflect.Map:
		return yaml.Unmarshal([]byte(raw), fv.Addr().Interface())
	default:
		return fmt.Errorf("unsupported kind %s", fv.Kind())
	}
	return nil
}
