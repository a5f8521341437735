package main

import (
	"reflect"
	"time"

	"github.com/chartsync/chartsync/record"
)

var timeType = reflect.TypeFor[time.Time]()

// inLocalTime returns v with every time in it in the device's local time
// zone, as a person at the device reads times; the chart keeps them in
// UTC. The view's lists are changed in place: v is the caller's own copy.
func inLocalTime(v record.View) record.View {
	localTimes(reflect.ValueOf(&v).Elem())
	return v
}

func localTimes(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == timeType {
			if v.CanSet() {
				v.Set(reflect.ValueOf(v.Interface().(time.Time).Local()))
			}
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				localTimes(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			localTimes(v.Index(i))
		}
	case reflect.Pointer:
		if !v.IsNil() {
			localTimes(v.Elem())
		}
	}
}
