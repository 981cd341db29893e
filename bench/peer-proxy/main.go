// peer-proxy: the minimal WorkflowService pass-through proxy that Temporal's documentation points
// to (go.temporal.io/api/proxy), built as the peer that claimcheck's pass-through benchmarks
// compare against. Nothing but the WorkflowService and the standard health service is served.
package main

import (
	"flag"
	"log"
	"net"

	"go.temporal.io/api/proxy"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Temporal payloads can be large; gRPC's 4 MiB default receive limit would make the peer refuse
// calls claimcheck and the frontend accept, which is not the comparison we want.
const maxMessageBytes = 128 << 20

func main() {
	listen := flag.String("listen", "127.0.0.1:7300", "address to serve on")
	upstream := flag.String("upstream", "127.0.0.1:7233", "Temporal frontend to forward to")
	flag.Parse()

	conn, err := grpc.NewClient(*upstream,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)))
	if err != nil {
		log.Fatalf("peer-proxy: upstream %s: %v", *upstream, err)
	}
	defer conn.Close()

	proxyServer, err := proxy.NewWorkflowServiceProxyServer(proxy.WorkflowServiceProxyOptions{
		Client: workflowservice.NewWorkflowServiceClient(conn),
	})
	if err != nil {
		log.Fatalf("peer-proxy: %v", err)
	}

	server := grpc.NewServer(grpc.MaxRecvMsgSize(maxMessageBytes), grpc.MaxSendMsgSize(maxMessageBytes))
	workflowservice.RegisterWorkflowServiceServer(server, proxyServer)
	// Answered by the peer itself, never forwarded (claimcheck forwards it to the frontend). The
	// service's own name too: `temporal operator cluster health` asks for it.
	healthServer := health.NewServer()
	healthServer.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthServer.SetServingStatus(workflowservice.WorkflowService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(server, healthServer)

	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("peer-proxy: listen %s: %v", *listen, err)
	}
	log.Printf("peer-proxy: serving on %s, forwarding to %s", listener.Addr(), *upstream)
	if err := server.Serve(listener); err != nil {
		log.Fatalf("peer-proxy: %v", err)
	}
}
