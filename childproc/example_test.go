package childproc_test

import (
	"bufio"
	"context"
	"fmt"
	"time"

	"github.com/procpool/procpool/childproc"
)

// A child that copies its protocol input (fd 3) to its protocol output
// (fd 4) until EOF.
func Example() {
	nice := 5
	p, err := childproc.Start(childproc.Spec{
		Path: "/bin/sh",
		Args: []string{"-c", "cat <&3 >&4"},
		Name: "echo",
		Nice: &nice, // applied to the child before it runs
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := p.Input().Write([]byte("hello\n")); err != nil {
		fmt.Println(err)
	}
	line, err := bufio.NewReader(p.Output()).ReadString('\n')
	if err != nil {
		fmt.Println(err)
	}
	fmt.Print(line)

	// Stop closes Input: cat reads EOF and exits on its own.
	exit := p.Stop(context.Background(), 5*time.Second)
	fmt.Println(exit, exit.Requested)
	// Output:
	// hello
	// exit 0 true
}
