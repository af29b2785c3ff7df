// Stops and removes every pod sandbox through CRI (so CNI DEL runs): `e2e/cluster down`.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	conn, err := grpc.NewClient("unix://"+os.Args[1],
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := runtime.NewRuntimeServiceClient(conn)
	pods, err := c.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		panic(err)
	}
	failed := 0
	for _, p := range pods.Items {
		if _, err := c.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			fmt.Fprintln(os.Stderr, "stop", p.Metadata.Name, err)
			failed++
		}
		if _, err := c.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			fmt.Fprintln(os.Stderr, "remove", p.Metadata.Name, err)
			failed++
		}
	}
	fmt.Printf("removed %d pod sandboxes\n", len(pods.Items))
	if failed > 0 {
		os.Exit(1)
	}
}
