//go:build unix

package main

import "syscall"

// privateFiles makes every file and directory this process creates
// readable by its user only (umask 077): the database, its journal and
// the files the libraries write, whatever mode they ask for.
func privateFiles() { syscall.Umask(0o077) }
