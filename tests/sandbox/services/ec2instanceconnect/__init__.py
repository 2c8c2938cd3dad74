"""EC2 Instance Connect: SendSSHPublicKey with AWS's validations; keys really reach sshd."""
