package enforcement

import (
	"net/netip"
	"reflect"
	"testing"
)

// TestRouteEqualEveryField: routes that differ in any field of the route,
// of a host or of a requirement never share an upstream transaction, so a
// field added later cannot merge routes that it tells apart; the domain
// alone does not matter.
func TestRouteEqualEveryField(t *testing.T) {
	base := func() *Route {
		return &Route{Domain: "a.test", Hosts: []Host{{
			Name:  "mx.shared.test",
			Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
			Req:   Requirement{Source: SourceFloor, Level: LevelEncrypt, Names: []string{"mx.shared.test"}},
		}}}
	}
	other := base()
	other.Domain = "b.test"
	if !base().Equal(other) {
		t.Fatal("routes that differ only in their domain are not equal")
	}
	paths := []struct {
		name string
		at   func(r *Route) reflect.Value
	}{
		{"Route", func(r *Route) reflect.Value { return reflect.ValueOf(r).Elem() }},
		{"Host", func(r *Route) reflect.Value { return reflect.ValueOf(&r.Hosts[0]).Elem() }},
		{"Requirement", func(r *Route) reflect.Value { return reflect.ValueOf(&r.Hosts[0].Req).Elem() }},
	}
	for _, p := range paths {
		typ := p.at(base()).Type()
		for i := range typ.NumField() {
			f := typ.Field(i)
			switch {
			case p.name == "Route" && f.Name == "Domain":
				continue // the domain does not count
			case f.Type == reflect.TypeOf(Requirement{}):
				continue // its fields are checked one by one
			}
			t.Run(p.name+"."+f.Name, func(t *testing.T) {
				r := base()
				if !mutate(p.at(r).Field(i)) {
					t.Fatalf("the test cannot change a field of kind %s: teach mutate", f.Type.Kind())
				}
				if r.Equal(base()) || base().Equal(r) {
					t.Errorf("routes that differ in %s.%s are equal", p.name, f.Name)
				}
			})
		}
	}
}

// mutate changes v to another value of its type.
func mutate(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
	default:
		return false
	}
	return true
}
