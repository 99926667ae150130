console.log("hello from a konnector installed by cozyform")
