package main

import (
	"fmt"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

func (c *cli) rmiCommand(use string) *cobra.Command {
	var force, noPrune bool
	cmd := &cobra.Command{
		Use:   use + " [OPTIONS] IMAGE [IMAGE...]",
		Short: "Remove one or more images",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			// Like docker: go on with the other images, report each failure,
			// exit non-zero when any failed.
			failed := false
			for _, name := range args {
				res, err := api.ImageRemove(cmd.Context(), name, client.ImageRemoveOptions{Force: force, PruneChildren: !noPrune})
				if err != nil {
					fmt.Fprintln(c.err, errorLine(err))
					failed = true
					continue
				}
				for _, d := range res.Items {
					if d.Untagged != "" {
						fmt.Fprintln(c.out, "Untagged:", d.Untagged)
					}
					if d.Deleted != "" {
						fmt.Fprintln(c.out, "Deleted:", d.Deleted)
					}
				}
			}
			if failed {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "force removal of the image")
	cmd.Flags().BoolVar(&noPrune, "no-prune", false, "do not delete untagged parents")
	return cmd
}
