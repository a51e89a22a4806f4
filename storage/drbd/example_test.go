package drbd_test

import (
	"fmt"
	"strings"

	"github.com/xenha/xenha/storage/drbd"
)

func ExampleParseStatusText() {
	rs, err := drbd.ParseStatusText([]byte(`vm-disk1 role:Secondary
  disk:UpToDate open:no
  node-a role:Primary
    peer-disk:UpToDate
  node-c connection:Connecting
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	r := rs[0]
	fmt.Println(r.Name, r.Role, r.Devices[0].Disk)
	for _, c := range r.Connections {
		fmt.Println(" ", c.Name, c.State, c.PeerRole)
	}
	// Output:
	// vm-disk1 Secondary UpToDate
	//   node-a  Primary
	//   node-c Connecting
}

func ExampleParseEvents() {
	st, _, err := drbd.ParseEvents(strings.NewReader(`exists resource name:vm-disk1 role:Primary
exists connection name:vm-disk1 peer-node-id:1 conn-name:node-b connection:Connected role:Secondary
exists -
change connection name:vm-disk1 peer-node-id:1 conn-name:node-b connection:StandAlone role:Unknown
call helper name:vm-disk1 peer-node-id:1 conn-name:node-b volume:0 helper:split-brain
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	r, _ := st.Resource("vm-disk1")
	c := r.Connections[0]
	fmt.Println(c.Name, c.State, "split brain:", c.SplitBrain)
	// Output: node-b StandAlone split brain: true
}
