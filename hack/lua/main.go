// Command luahealth runs an Argo CD resource health script (Lua) against one Kubernetes object,
// in the same interpreter and the same sandbox Argo CD uses, so tests exercise the script that
// users paste into argocd-cm rather than a re-implementation of it.
//
//	luahealth SCRIPT.lua < object.json
//
// It prints the health as Argo CD would record it: {"status": "...", "message": "..."}.
//
// What it mirrors, from argoproj/argo-cd util/lua/lua.go (v3.6.1; ExecuteHealthLua, runLua,
// decodeValue) and the gopher-lua / gopher-json versions that release pins in its go.mod:
//   - Libraries: health scripts from argocd-cm run without gopher-lua's standard libraries unless
//     resource.customizations.useOpenLibs is set; Argo CD then opens only package, base and table
//     (plus a reduced os with time and date, which this runner leaves out: a script that needs
//     it fails here, never the other way round). In particular there is no string library.
//   - The object: decoded from JSON the way apimachinery's unstructured decoding does (integers
//     become int64, other numbers float64), then converted value by value into Lua tables and
//     set as the global `obj`.
//   - A one-second execution deadline.
//   - The result: the table the chunk returns, encoded with gopher-json and decoded into
//     {status, message}; a status Argo CD does not know becomes Unknown with Argo CD's message.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

// healthStatus has the JSON shape of gitops-engine's health.HealthStatus.
type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

// Argo CD's message for a status outside its set (util/lua/lua.go, invalidHealthStatus).
const invalidHealthStatus = "Lua returned an invalid health status"

var validStatuses = map[string]bool{"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: luahealth SCRIPT.lua < object.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	obj, err := readObject(os.Stdin)
	if err != nil {
		fail(fmt.Errorf("reading the object from stdin: %w", err))
	}
	hs, err := executeHealth(obj, string(script))
	if err != nil {
		fail(err)
	}
	out, err := json.Marshal(hs)
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "luahealth:", err)
	os.Exit(1)
}

// readObject decodes one JSON object with numbers as apimachinery's unstructured JSON decoding
// leaves them: int64 when the literal is an integer that fits, float64 otherwise.
func readObject(r io.Reader) (map[string]any, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	obj, ok := convertNumbers(v).(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return obj, nil
}

func convertNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case []any:
		for i := range t {
			t[i] = convertNumbers(t[i])
		}
		return t
	case map[string]any:
		for k := range t {
			t[k] = convertNumbers(t[k])
		}
		return t
	}
	return v
}

// executeHealth follows Argo CD's ExecuteHealthLua: a script that returns nothing is an error
// here (Argo CD would fall back to having no health check, which is never what a test wants).
func executeHealth(obj map[string]any, script string) (*healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	ret := l.Get(-1)
	if ret.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
	encoded, err := luajson.Encode(ret)
	if err != nil {
		return nil, err
	}
	// An empty table encodes as [], which Argo CD turns into an empty status, unchecked.
	if bytes.Equal(encoded, []byte("[]")) {
		return &healthStatus{}, nil
	}
	hs := &healthStatus{}
	if err := json.Unmarshal(encoded, hs); err != nil {
		return nil, err
	}
	if !validStatuses[hs.Status] {
		return &healthStatus{Status: "Unknown", Message: invalidHealthStatus}, nil
	}
	return hs, nil
}

// toLua converts a decoded object value by value, as Argo CD's decodeValue does (arrays become
// sequences, maps become hash tables, null and anything unknown become nil).
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for k, item := range v {
			tbl.RawSetH(lua.LString(k), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}
