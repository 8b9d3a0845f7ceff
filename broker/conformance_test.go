package broker_test

import (
	"context"
	"testing"

	"github.com/hotline-rt/hotline/broker"
	"github.com/hotline-rt/hotline/broker/brokertest"
)

func TestMemoryConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) (broker.Broker, *brokertest.Node) {
		b := broker.NewMemory()
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		n := &brokertest.Node{}
		if err := b.Start(n); err != nil {
			t.Fatal(err)
		}
		return b, n
	}, func(t *testing.T, b broker.Broker) int {
		return broker.StoredEntries(b.(*broker.Memory))
	})
}
